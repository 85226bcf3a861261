"""How much a log can prove: off-policy estimates of two models' policies, against the truth.

For each world, two bundles are trained on the world's randomized experiment: ``good`` (the real
outcomes) and ``flipped`` (outcomes inverted: it targets exactly the wrong customers). The
``flipped`` one logs the decisions (20% holdout, 30% exploration, one decision per customer,
as the stream's policy makes them); then IPS / SNIPS / DR estimate what each model's treatment
policy would earn per decision at the logged spend, the paired DR difference decides promotion,
and the simulator's potential outcomes give the true values.

Worlds: the default (contract values with an enterprise tail: sd 2.6x the mean) and the one
the closed-loop integration test uses (one plan, action effects x2.5). The point: the default
world's heavy tail makes the paired difference's interval about 4 times wider for the same
number of decisions; plan log sizes with this before trusting `nba retrain` on a small base.

Run: `.venv/bin/python -m benchmarks.ope_power [--customers N]`
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks._common import write_result
from feedback.champion_challenger import (
    OffPolicyData,
    candidate_decisions,
    evaluate_candidates,
    off_policy_log,
)
from feedback.ope import compare
from feedback.readout import join_feedback
from model_export.features import engagement_score, feature_matrix, logins_per_seat, policy_scores
from model_export.manifest import Registry
from model_export.runs import export_run, save_run
from model_export.serving import BundleScorer
from model_export.training import train_models
from policies.arms import Arm, ArmConfig
from policies.catalog import CHANNELS, default_catalog
from policies.decide import PolicyConfig, decide_stream
from policies.pacing import Pacer
from policies.rules import ContactState
from policies.segments import SEGMENTS
from simulator.config import scaled_effects, validated
from simulator.datasets import randomized_experiment
from simulator.events import outcome_events
from simulator.world import World, build_world

STRONG = scaled_effects(2.5)
WORLDS: dict[str, dict[str, Any]] = {
    "default": {},
    "one plan, effects x2.5": {
        "baseline_churn_rate": 0.25,
        "actions": STRONG,
        "plan_shares": {"starter": 0.0, "growth": 1.0, "enterprise": 0.0},
    },
}


def _register(world: World, registry: Registry, root: Path) -> None:
    experiment = randomized_experiment(world)
    for version, frame in (
        ("good", experiment),
        ("flipped", experiment.assign(retained=~experiment["retained"].astype(bool))),
    ):
        trained = train_models(frame, default_catalog().names, "s", 0)
        export_run(save_run(trained, root / version, ""), registry, version)


def _logged(world: World, scorer: BundleScorer) -> pd.DataFrame:
    """One stream decision per customer by the served model, with its outcome."""
    catalog = default_catalog()
    snapshot = world.customers
    ids = snapshot["customer_id"].astype(str).tolist()
    p_churn, uplift, expansion = scorer.predict(feature_matrix(snapshot))
    engagement = engagement_score(snapshot, np.sort(logins_per_seat(snapshot)))
    scores = policy_scores(snapshot, ids, p_churn, uplift, expansion, engagement)
    consent = np.column_stack([snapshot[f"consent_{c}"].to_numpy(bool) for c in CHANNELS])
    arms = ArmConfig(experiment="ope-power", holdout_share=0.2, explore_share=0.3)
    d = decide_stream(
        scores, ContactState.fresh(len(ids), consent), PolicyConfig(arms=arms), Pacer(1.0), np.inf
    )
    actions = pd.DataFrame(
        {
            "action_id": [f"a{i}" for i in range(len(ids))],
            "customer_id": ids,
            "action": np.asarray(catalog.names)[d.action],
            "cost": d.cost,
            "segment": np.asarray(SEGMENTS)[d.segment],
            "arm": [Arm(a).label for a in d.arm],
            "propensity": d.propensity,
            "reasons": [d.reasons(i) for i in range(len(ids))],
            "model_version": scorer.version,
            "decided_at": "2026-01-01T00:00:00+00:00",
        }
    )
    outcomes = pd.DataFrame(
        outcome_events(world, np.arange(world.n), d.action, actions["action_id"].tolist())
    )
    joined, _ = join_feedback(actions, outcomes)
    return joined


def _truth(world: World, data: OffPolicyData, scorer: BundleScorer) -> float:
    """The candidate's value on the logged customers, from the simulator's potential outcomes."""
    target = candidate_decisions(data, scorer, default_catalog(), data.spend)
    rows = pd.Index(world.customers["customer_id"].astype(str)).get_indexer(
        pd.Index(data.snapshot["customer_id"].astype(str))
    )
    earned = world.retained[rows, target.action] * world.value[rows]
    earned = earned + world.expansion[rows, target.action]
    return float((earned - target.cost).mean())


def run_world(name: str, customers: int, seed: int) -> dict[str, Any]:
    world = build_world(validated(n_customers=customers, seed=seed, **WORLDS[name]))
    catalog = default_catalog()
    with tempfile.TemporaryDirectory() as folder:
        registry = Registry(Path(folder) / "registry")
        _register(world, registry, Path(folder))
        served = BundleScorer(registry, catalog, "flipped", threads=0)
        data = off_policy_log(_logged(world, served), world.customers, served, catalog)
        found = evaluate_candidates(data, registry, catalog, {"good": "good", "flipped": "flipped"})
        truth = {
            v: _truth(world, data, BundleScorer(registry, catalog, v, threads=0))
            for v in ("good", "flipped")
        }
    difference = compare(found["good"]["dr"], found["flipped"]["dr"])
    value = world.value
    return {
        "contract_value_sd_over_mean": float(value.std() / value.mean()),
        "logged_decisions_for_ope": int(data.log.action.size),
        "policies": {
            v: {
                "true_value_per_decision": truth[v],
                **{k: e.summary() for k, e in found[v].items()},
                "dr_covers_truth": bool(
                    found[v]["dr"].ci_low <= truth[v] <= found[v]["dr"].ci_high
                ),
            }
            for v in ("good", "flipped")
        },
        "true_difference": truth["good"] - truth["flipped"],
        "dr_difference": difference.summary(),
        "promoted_good_over_flipped": bool(difference.ci_low > 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    results = {name: run_world(name, args.customers, args.seed) for name in WORLDS}
    path = write_result("ope_power", vars(args), results)
    print(json.dumps(results, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
