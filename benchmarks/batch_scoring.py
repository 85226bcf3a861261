"""Batch mode: a whole base scored (one ONNX call) and decided (one allocation) in one pass.
Target: 1,000,000 customers in under 30 s. Baseline in the same run: the same models scored
natively (XGBoost, from the training run's JSON files) on the same rows.

Run: `.venv/bin/python -m benchmarks.batch_scoring [--customers N]` (trains a small model
first, in a temporary registry).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from benchmarks._common import timed, write_result
from model_export.features import feature_matrix
from model_export.manifest import Registry
from model_export.runs import export_run, load_run, save_run
from model_export.training import train_models
from policies.catalog import default_catalog
from policies.decide import PolicyConfig
from simulator.config import WorldConfig
from simulator.datasets import randomized_experiment
from simulator.world import build_world
from stream_app.commands.score import score_all
from stream_app.scorer import BundleScorer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--train-customers", type=int, default=40_000)
    parser.add_argument("--learner", default="s")
    args = parser.parse_args()
    catalog = default_catalog()
    root = Path(tempfile.mkdtemp(prefix="nba-batch-bench-"))
    training_world = build_world(WorldConfig(n_customers=args.train_customers, seed=1))
    trained = train_models(
        randomized_experiment(training_world), catalog.names, args.learner, seed=1
    )
    run = save_run(trained, root / "run", "")
    registry = Registry(root / "registry")
    export_run(run, registry, "bench")
    registry.promote("bench")
    scorer = BundleScorer(registry, catalog, threads=0)

    world, build_s = timed(lambda: build_world(WorldConfig(n_customers=args.customers, seed=2)))
    budget = 0.05 * world.n * 200.0
    decisions, total_s = timed(lambda: score_all(world.customers, scorer, PolicyConfig(), budget))
    features, features_s = timed(lambda: feature_matrix(world.customers))
    _, onnx_s = timed(lambda: scorer.predict(features))
    _, churn, retention, expansion = load_run(run)
    _, native_s = timed(
        lambda: (
            churn.predict_proba(features),
            retention.predict_uplift(features),
            expansion.predict_uplift(features),
        )
    )
    results = {
        "customers": world.n,
        "score_and_decide_s": round(total_s, 2),
        "of_which_features_s": round(features_s, 2),
        "of_which_onnx_s": round(onnx_s, 2),
        "decide_and_rest_s": round(total_s - features_s - onnx_s, 2),
        "native_xgboost_scoring_s": round(native_s, 2),
        "onnx_vs_native_scoring": round(onnx_s / native_s, 2),
        "actions": int((decisions.action != 0).sum()),
        "spend": round(float(decisions.cost.sum())),
        "budget": budget,
        "meets_30s_target": total_s < 30.0,
        "world_build_s_not_counted": round(build_s, 2),
    }
    path = write_result(
        "batch_scoring",
        {"customers": args.customers, "learner": args.learner, "onnx_threads": "all cores"},
        results,
    )
    print(json.dumps(results, indent=2))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
