"""Decision quality (issue 20): what the served policy truly earns on customers its models never
saw, as three ratios at budgets that can call 1%, 5% and 20% of the base.

The served policy: a bundle trained on one simulated world's randomized experiment, exported
and scored through ONNX (model_export.serving), deciding with policies.decide_batch on a second
world (another seed: customers the models were not trained on). Against it, under the same
rules (consent, the catalog's capacity, the same eligibility, the same budget; no holdout and no
exploration on either side):

- the **true-effect oracle**: the same allocator fed every customer's true expected net gain
  (simulator.world.World.true_uplift minus the cost): the headline ratio;
- the **realized-outcome oracle**: the same allocator fed each customer's realized outcomes
  (simulator.truth.oracle_policy): the ceiling no policy can reach;
- **risk-sorted** (V1): call the riskiest, e-mail when calls run out (benchmarks.policy_value).

Beside them, the **feature ceiling**: the same allocator fed XGBoost regressors of the true
effects themselves (simulator truth, not outcomes) on ``--ceiling-customers`` customers of the
training world. The true effects depend on latent traits the features see only through noisy
counts, so no model of these features can earn the true-effect oracle's value; this policy is
an estimate of what one can (reported as its own ratio to the true-effect oracle, and the
served policy's ratio to it).

Each policy is valued by its true expected net gain (the sum over its choices of the true
expected effect times value, minus cost); the realized-outcome ratio uses realized values on
both sides. Harm: the share of treated customers whose action's true expected effect (before
cost) is negative.

The served models learn from the default world; with ``--unseen`` they also decide on worlds
whose parameters they never saw (other churn rates, effect sizes, plan mixes, noisier
features), each against its own oracles and a feature ceiling trained on its own parameters.

Run: `.venv/bin/python -m benchmarks.decision_quality [--customers N] [--learners sp,r]
[--train-customers N] [--equal-shares] [--unseen]` (the JSON keeps the last run's parameters).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from benchmarks._common import write_result
from benchmarks.policy_value import CALL_PRICE
from model_export.features import feature_matrix
from model_export.learners import base_model
from model_export.manifest import Registry
from model_export.runs import export_run, save_run
from model_export.serving import BundleScorer, score_all
from model_export.training import train_models
from policies.allocation import allocate_dual
from policies.arms import ArmConfig
from policies.baselines import risk_sorted
from policies.catalog import default_catalog
from policies.decide import PolicyConfig, opportunities
from simulator.config import WorldConfig, scaled_effects
from simulator.datasets import randomized_experiment
from simulator.truth import contact_state, noisy_scores, oracle_policy, score_policy
from simulator.world import World, build_world

BUDGET_SHARES = (0.01, 0.05, 0.20)


def served_bundle(frame: pd.DataFrame, name: str, root: Path, learner: str = "sp") -> BundleScorer:
    """A bundle trained on ``frame`` (an experiment), exported, promoted and served."""
    catalog = default_catalog()
    trained = train_models(frame, catalog.names, learner, seed=1)
    run = save_run(trained, root / f"run-{name}", "")
    registry = Registry(root / f"registry-{name}")
    export_run(run, registry, name)
    registry.promote(name)
    return BundleScorer(registry, catalog, threads=0)


def _experiment(train_customers: int, equal_shares: bool) -> pd.DataFrame:
    """The training world's experiment: half in control, or with ``equal_shares`` every
    action and control alike."""
    world = build_world(WorldConfig(n_customers=train_customers, seed=1))
    shares = {a: 1 / len(world.actions) for a in world.actions} if equal_shares else None
    return randomized_experiment(world, shares)


class _FeatureCeiling:
    """A scorer of E[true effect | features]: regressors of the simulator's true retention and
    expansion effects (and churn probability) on a large world, not of outcomes."""

    version = "feature-ceiling"

    def __init__(self, world: World, n_estimators: int = 400) -> None:
        x = feature_matrix(world.customers)
        retain, expansion = world.p_retain, world.expected_expansion
        retention_effect = retain - retain[:, :1]
        expansion_share = (expansion - expansion[:, :1]) / world.value[:, None]
        actions = range(1, retain.shape[1])
        self._retention = [
            base_model("regressor", a, n_estimators).fit(x, retention_effect[:, a]) for a in actions
        ]
        self._expansion = [
            base_model("regressor", a, n_estimators).fit(x, expansion_share[:, a]) for a in actions
        ]
        self._churn = base_model("regressor", 0, n_estimators).fit(x, 1.0 - retain[:, 0])

    def predict(
        self, x: NDArray[np.float32]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        def columns(models: list[Any]) -> NDArray[np.float64]:
            return np.column_stack([np.zeros(len(x))] + [m.predict(x) for m in models]).astype(
                np.float64
            )

        p_churn = np.clip(self._churn.predict(x), 0.0, 1.0).astype(np.float64)
        return p_churn, columns(self._retention), columns(self._expansion)


def _true_value(net: NDArray[np.float64], choice: NDArray[np.int64]) -> float:
    return float(net[np.arange(len(choice)), choice].sum())


def _harm(gain: NDArray[np.float64], choice: NDArray[np.int64]) -> float:
    treated = choice != 0
    harmful = gain[np.arange(len(choice)), choice] < 0
    return float((treated & harmful).sum() / max(int(treated.sum()), 1))


def _at_budget(
    world: World,
    served: NDArray[np.int64],
    ceiling: NDArray[np.int64],
    p_churn: NDArray[np.float64],
    budget: float,
) -> dict[str, Any]:
    config = PolicyConfig(arms=ArmConfig(holdout_share=0.0, explore_share=0.0))
    catalog = config.catalog
    state = contact_state(world)
    _, cost, eligible = opportunities(noisy_scores(world, noise=0.0), state, config)
    caps = catalog.capacities()
    gain = world.true_uplift()
    net = gain - cost
    true_oracle = allocate_dual(net, cost, eligible, budget, caps)
    realized_oracle = oracle_policy(world, budget, caps, eligible)
    risk = risk_sorted(p_churn, eligible, cost, budget, caps, catalog)
    values = {
        name: _true_value(net, choice)
        for name, choice in {
            "served": served,
            "true_effect_oracle": true_oracle,
            "feature_ceiling": ceiling,
            "risk": risk,
        }.items()
    }
    realized = {
        name: score_policy(world, choice).net_value
        for name, choice in {"served": served, "realized_oracle": realized_oracle}.items()
    }
    return {
        "budget": round(budget),
        "served_true_value": round(values["served"]),
        "true_effect_oracle_value": round(values["true_effect_oracle"]),
        "vs_true_effect_oracle": round(values["served"] / values["true_effect_oracle"], 3),
        "vs_realized_outcome_oracle": round(realized["served"] / realized["realized_oracle"], 3),
        "vs_risk_sorted": round(values["served"] / values["risk"], 3),
        "vs_feature_ceiling": round(values["served"] / values["feature_ceiling"], 3),
        "feature_ceiling_vs_true_effect_oracle": round(
            values["feature_ceiling"] / values["true_effect_oracle"], 3
        ),
        "served_spend": round(float(cost[np.arange(world.n), served].sum())),
        "true_effect_oracle_spend": round(float(cost[np.arange(world.n), true_oracle].sum())),
        "served_treated": int((served != 0).sum()),
        "harmful_share_of_treated": round(_harm(gain, served), 3),
        "feature_ceiling_harmful_share": round(_harm(gain, ceiling), 3),
    }


# Worlds whose parameters the served models never saw (they learn from the default world).
UNSEEN_WORLDS: dict[str, dict[str, Any]] = {
    "churn_12pct": {"baseline_churn_rate": 0.12},
    "churn_28pct": {"baseline_churn_rate": 0.28},
    "effects_x0.5": {"actions": scaled_effects(0.5)},
    "effects_x1.5": {"actions": scaled_effects(1.5)},
    "observation_noise_0.5": {"observation_noise": 0.5},
    "more_enterprise": {"plan_shares": {"starter": 0.35, "growth": 0.40, "enterprise": 0.25}},
}


def evaluate_world(
    world: World, scorers: dict[str, BundleScorer], ceiling_customers: int
) -> dict[str, Any]:
    """Every served scorer at every budget on ``world``, beside a feature ceiling trained on
    another world of the same parameters."""
    config = PolicyConfig(arms=ArmConfig(holdout_share=0.0, explore_share=0.0))
    budgets = {f"{int(share * 100)}pct": share * world.n * CALL_PRICE for share in BUDGET_SHARES}
    same_kind = world.config.model_copy(update={"n_customers": ceiling_customers, "seed": 1})
    ceiling = _FeatureCeiling(build_world(same_kind))
    ceiling_choices = {
        key: score_all(world.customers, ceiling, config, budget).action
        for key, budget in budgets.items()
    }
    results: dict[str, Any] = {}
    for learner, scorer in scorers.items():
        p_churn = scorer.predict(feature_matrix(world.customers))[0]
        results[learner] = {
            key: _at_budget(
                world,
                score_all(world.customers, scorer, config, budget).action,
                ceiling_choices[key],
                p_churn,
                budget,
            )
            for key, budget in budgets.items()
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000, help="held-out world")
    parser.add_argument("--train-customers", type=int, default=40_000)
    parser.add_argument("--learners", default="sp", help="comma-separated: sp, s, t, x, dr, r, ct")
    parser.add_argument("--seed", type=int, default=2, help="the held-out world's seed")
    parser.add_argument("--ceiling-customers", type=int, default=200_000)
    parser.add_argument(
        "--equal-shares",
        action="store_true",
        help="train on an experiment with equal shares per action and control",
    )
    parser.add_argument(
        "--unseen",
        action="store_true",
        help="also score worlds whose parameters the models never saw (UNSEEN_WORLDS)",
    )
    args = parser.parse_args()
    worlds: dict[str, dict[str, Any]] = {"default": {}} | (UNSEEN_WORLDS if args.unseen else {})
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="nba-quality-") as tmp:
        experiment = _experiment(args.train_customers, args.equal_shares)
        scorers = {
            learner: served_bundle(experiment, learner, Path(tmp), learner)
            for learner in args.learners.split(",")
        }
        for name, params in worlds.items():
            world = build_world(WorldConfig(n_customers=args.customers, seed=args.seed, **params))
            results[name] = evaluate_world(world, scorers, args.ceiling_customers)
            print(name, json.dumps(results[name], indent=2), flush=True)
    path = write_result(
        "decision_quality",
        {
            "customers": args.customers,
            "train_customers": args.train_customers,
            "seed": args.seed,
            "ceiling_customers": args.ceiling_customers,
            "equal_shares": args.equal_shares,
            "worlds": {name: sorted(params) for name, params in worlds.items()},
            "budget_shares": BUDGET_SHARES,
            "call_price": CALL_PRICE,
        },
        results,
    )
    print(f"written: {path}")


if __name__ == "__main__":
    main()
