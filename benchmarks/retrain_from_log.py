"""Closing the loop on the engine's own data (issue 20): does a model retrained from the
engine's log earn at least what the model trained on the initial experiment earns?

1. The initial model learns from a randomized experiment on one world (as in
   benchmarks.decision_quality) and is served.
2. A simulated period: it decides once for every customer of another world under the stream's
   arms (holdout and exploration shares, as `nba worker` runs them) and a budget that can call
   5% of them; each decision gets the outcome that world holds for it.
3. `nba retrain`'s frame is built from that log (feedback.log_training: the holdout and
   exploration decisions with their design propensities, features as of each decision), and
   two challengers learn: from the log alone, and from the initial experiment plus the log.
4. All three decide on a third world the models never saw, each against the true-effect oracle
   under the same rules (benchmarks.decision_quality), at 1/5/20% budgets.

The period's log is what `nba retrain` reads from the topics; it is made here without Kafka, so
that a period of hundreds of thousands of decisions takes seconds (the same frame built from
the real topics is tested in tests/test_closed_loop_integration.py).

Run: `.venv/bin/python -m benchmarks.retrain_from_log [--period-customers N]`
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks._common import write_result
from benchmarks.decision_quality import evaluate_world, served_bundle
from benchmarks.policy_value import CALL_PRICE
from feedback.log_training import experiment_from_log
from model_export.serving import BundleScorer, score_all
from policies.arms import Arm, ArmConfig
from policies.catalog import default_catalog
from policies.decide import PolicyConfig
from simulator.config import WorldConfig
from simulator.datasets import randomized_experiment
from simulator.world import AS_OF, World, build_world


def period_log(world: World, scorer: BundleScorer, arms: ArmConfig, budget: float) -> pd.DataFrame:
    """One decision per customer of ``world`` under ``arms``, joined to the outcome the world
    holds for the action taken (the columns feedback.readout's join gives)."""
    decisions = score_all(world.customers, scorer, PolicyConfig(arms=arms), budget)
    rows = np.arange(world.n)
    ids = world.customers["customer_id"].astype(str)
    return pd.DataFrame(
        {
            "action_id": "period:" + ids,
            "customer_id": ids,
            "action": np.asarray(default_catalog().names)[decisions.action],
            "arm": [Arm(a).label for a in decisions.arm],
            "propensity": decisions.propensity,
            "decided_at": pd.Timestamp(AS_OF).tz_convert("UTC") + pd.Timedelta(days=1),
            "retained": world.retained[rows, decisions.action],
            "value": world.value,
            "expansion": world.expansion[rows, decisions.action],
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-customers", type=int, default=40_000)
    parser.add_argument("--period-customers", type=int, default=200_000)
    parser.add_argument("--customers", type=int, default=100_000, help="the unseen world")
    parser.add_argument("--ceiling-customers", type=int, default=200_000)
    args = parser.parse_args()
    arms = ArmConfig()
    catalog = default_catalog()
    initial = randomized_experiment(
        build_world(WorldConfig(n_customers=args.train_customers, seed=1))
    )
    period = build_world(WorldConfig(n_customers=args.period_customers, seed=3))
    unseen = build_world(WorldConfig(n_customers=args.customers, seed=2))
    with tempfile.TemporaryDirectory(prefix="nba-retrain-") as tmp:
        root = Path(tmp)
        served = served_bundle(initial, "initial", root)
        budget = 0.05 * period.n * CALL_PRICE
        log = experiment_from_log(
            period_log(period, served, arms, budget), period.customers, catalog, arms
        )
        both = pd.concat([initial, log.frame], join="inner", ignore_index=True)
        scorers = {
            "initial_experiment": served,
            "log_only": served_bundle(log.frame, "log", root),
            "experiment_and_log": served_bundle(both, "both", root),
        }
        results = evaluate_world(unseen, scorers, args.ceiling_customers)
    rows = {
        "initial_experiment": len(initial),
        "log_holdout": log.holdout_rows,
        "log_explore": log.explore_rows,
        "log_without_features": log.without_features,
        "log_explore_cut_by_limits": log.explore_cut,
        "experiment_and_log": len(both),
    }
    print(json.dumps({"rows": rows, "results": results}, indent=2))
    path = write_result(
        "retrain_from_log",
        {
            "train_customers": args.train_customers,
            "period_customers": args.period_customers,
            "period_budget_share": 0.05,
            "holdout_share": arms.holdout_share,
            "explore_share": arms.explore_share,
            "customers": args.customers,
            "ceiling_customers": args.ceiling_customers,
        },
        {"training_rows": rows, **results},
    )
    print(f"written: {path}")


if __name__ == "__main__":
    main()
