"""Levers against harmful treatments (issue 20): what each costs in value, on the held-out world.

The served policy (the pooled S-learner, as `benchmarks.decision_quality` trains it) treats some
customers with an action whose true expected effect is negative. The levers, each scored
against the true-effect oracle under the same rules, with the share of treated customers harmed:

- a lower confidence bound: ``--bag`` pooled S-learners on bootstrap resamples of the
  experiment; each customer's uplift and expansion are the bag's mean minus z standard
  deviations (z = 0: the bag's mean);
- shrinkage: the predicted retention uplift times a factor below 1;
- a floor: predicted retention uplifts below a few points count as none;
- a second learner: the mean of the served uplift and the R-learner's (trained on the same
  experiment);
- for scale, not a lever: the best linear map of each action's predicted retention uplift onto
  its true one, fitted on the held-out world's truth. What it adds bounds what any calibration
  of the uplift's scale could.

    .venv/bin/python -m benchmarks.harm_levers [--bag 5] [--customers 100000]

No lever is served by the engine: this measures whether one would pay for itself.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks._common import write_result
from benchmarks.decision_quality import BUDGET_SHARES, _at_budget, _experiment, served_bundle
from benchmarks.policy_value import CALL_PRICE
from model_export.features import feature_matrix
from model_export.serving import BundleScorer, score_all
from policies.arms import ArmConfig
from policies.decide import PolicyConfig
from simulator.config import WorldConfig
from simulator.world import World, build_world

Floats = NDArray[np.float64]
Predictions = tuple[Floats, Floats, Floats]


class _LowerBound:
    """Mean minus ``z`` standard deviations of a bag of scorers' uplift and expansion."""

    version = "lower-bound"

    def __init__(self, bag: list[Predictions], z: float) -> None:
        self._bag, self._z = bag, z

    def predict(self, x: NDArray[np.float32]) -> Predictions:
        uplift = np.stack([b[1] for b in self._bag])
        expansion = np.stack([b[2] for b in self._bag])
        return (
            np.mean([b[0] for b in self._bag], axis=0),
            uplift.mean(axis=0) - self._z * uplift.std(axis=0, ddof=1),
            expansion.mean(axis=0) - self._z * expansion.std(axis=0, ddof=1),
        )


class _Fixed:
    """Predictions made beforehand, served as they are."""

    version = "fixed"

    def __init__(self, predictions: Predictions) -> None:
        self._predictions = predictions

    def predict(self, x: NDArray[np.float32]) -> Predictions:
        return self._predictions


def _mean_of(first: Predictions, second: Predictions) -> _Fixed:
    churn, uplift, expansion = (np.mean([a, b], axis=0) for a, b in zip(first, second, strict=True))
    return _Fixed((churn, uplift, expansion))


def _linear_oracle(predictions: Predictions, world: World) -> _Fixed:
    """Each action's retention uplift mapped by the least-squares line onto the true effect."""
    p_churn, uplift, expansion = predictions
    true = world.p_retain - world.p_retain[:, :1]
    mapped = uplift.copy()
    for a in range(1, uplift.shape[1]):
        slope, intercept = np.polyfit(uplift[:, a], true[:, a], 1)
        mapped[:, a] = intercept + slope * uplift[:, a]
    return _Fixed((p_churn, mapped, expansion))


class _Adjusted:
    """The served scorer's retention uplift times ``factor``, and below ``floor`` (a positive
    uplift) counted as none; a negative prediction stays as it is."""

    version = "adjusted"

    def __init__(self, predictions: Predictions, factor: float, floor: float) -> None:
        self._predictions, self._factor, self._floor = predictions, factor, floor

    def predict(self, x: NDArray[np.float32]) -> Predictions:
        p_churn, uplift, expansion = self._predictions
        kept = np.where(uplift > self._floor, uplift * self._factor, np.minimum(uplift, 0.0))
        return p_churn, kept, expansion


def _scored(world: World, scorer: Any, config: PolicyConfig) -> dict[str, Any]:
    """Value / true-effect oracle and the share harmed at each budget (the ceiling columns of
    `_at_budget` are the served policy's own: no feature ceiling is trained here)."""
    results = {}
    p_churn = scorer.predict(feature_matrix(world.customers))[0]
    for share in BUDGET_SHARES:
        budget = share * world.n * CALL_PRICE
        chosen = score_all(world.customers, scorer, config, budget).action
        row = _at_budget(world, chosen, chosen, p_churn, budget)
        results[f"{int(share * 100)}pct"] = {
            k: row[k]
            for k in ("vs_true_effect_oracle", "harmful_share_of_treated", "served_treated")
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000, help="held-out world")
    parser.add_argument("--train-customers", type=int, default=40_000)
    parser.add_argument("--bag", type=int, default=5, help="bootstrap models for the bound")
    parser.add_argument("--seed", type=int, default=2, help="the held-out world's seed")
    args = parser.parse_args()
    config = PolicyConfig(arms=ArmConfig(holdout_share=0.0, explore_share=0.0))
    experiment = _experiment(args.train_customers, equal_shares=False)
    world = build_world(WorldConfig(n_customers=args.customers, seed=args.seed))
    x = feature_matrix(world.customers)
    rng = np.random.default_rng(7)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="nba-harm-") as tmp:
        served: BundleScorer = served_bundle(experiment, "served", Path(tmp))
        served_predictions = served.predict(x)
        bag = []
        for k in range(args.bag):
            rows = rng.integers(0, len(experiment), len(experiment))
            resample = experiment.iloc[rows].reset_index(drop=True)
            bag.append(served_bundle(resample, f"bag{k}", Path(tmp)).predict(x))
        variants: dict[str, Any] = {"served": served}
        variants |= {f"lower_bound_z{z}": _LowerBound(bag, z) for z in (0.0, 0.5, 1.0, 2.0)}
        variants |= {f"shrink_x{f}": _Adjusted(served_predictions, f, 0.0) for f in (0.5, 0.75)}
        variants |= {f"floor_{d}": _Adjusted(served_predictions, 1.0, d) for d in (0.01, 0.02)}
        r_learner = served_bundle(experiment, "r", Path(tmp), "r").predict(x)
        variants["mean_with_r_learner"] = _mean_of(served_predictions, r_learner)
        variants["linear_map_on_truth"] = _linear_oracle(served_predictions, world)
        for name, scorer in variants.items():
            results[name] = _scored(world, scorer, config)
            print(name, json.dumps(results[name]), flush=True)
    path = write_result(
        "harm_levers",
        {
            "customers": args.customers,
            "train_customers": args.train_customers,
            "bag": args.bag,
            "seed": args.seed,
            "budget_shares": BUDGET_SHARES,
        },
        results,
    )
    print(f"written: {path}")


if __name__ == "__main__":
    main()
