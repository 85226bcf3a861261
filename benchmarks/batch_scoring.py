"""Batch mode: a whole base scored and decided (one allocation) in one pass.
Target: 1,000,000 customers in under 30 s. Scored as `nba score --all` does: the promoted
version's native XGBoost models, kept in the registry beside its ONNX bundle
(model_export.batch_serving). Baseline in the same run: the same base scored and decided with
the ONNX bundle (parts of the rows on every core, one onnxruntime thread each), and the share of
customers given the same action both ways. Peak RSS of this process is recorded after the
timed pass.

Run: `.venv/bin/python -m benchmarks.batch_scoring [--customers N] [--session-variants]
[--spark-partitions N]` (trains a small model first, in a temporary registry).
``--session-variants`` also times the same ONNX call under other onnxruntime session settings
(chunks, parallel nodes, one thread), to show whether tuning onnxruntime closes the gap to
native XGBoost. ``--spark-partitions`` (default 8; 0: skip) also runs the same snapshot through
`nba score --all --engine spark` in local mode on this machine, and checks that its decisions
are identical.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
from numpy.typing import NDArray

from benchmarks._common import measured_run, peak_rss_mb, timed, write_result
from model_export.batch_serving import batch_scorer
from model_export.bundle import OUTPUTS
from model_export.features import feature_matrix
from model_export.manifest import Registry
from model_export.runs import export_run, save_run
from model_export.serving import BundleScorer, score_all
from model_export.spark_scoring import score_all_spark, spark_session
from model_export.training import train_models
from policies.catalog import default_catalog
from policies.decide import Decisions, PolicyConfig
from simulator.config import WorldConfig
from simulator.datasets import randomized_experiment
from simulator.world import build_world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--train-customers", type=int, default=40_000)
    parser.add_argument("--learner", default="sp")
    parser.add_argument("--session-variants", action="store_true")
    parser.add_argument("--spark-partitions", type=int, default=8)
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
    scorer = batch_scorer(registry, catalog)  # what `nba score --all` serves
    bundle = BundleScorer(registry, catalog, threads=0)

    world, build_s = timed(lambda: build_world(WorldConfig(n_customers=args.customers, seed=2)))
    budget = 0.05 * world.n * 200.0
    decisions, total_s = timed(lambda: score_all(world.customers, scorer, PolicyConfig(), budget))
    rss_after_score_all = peak_rss_mb(os.getpid())
    on_bundle, bundle_total_s = timed(
        lambda: score_all(world.customers, bundle, PolicyConfig(), budget)
    )
    features, features_s = timed(lambda: feature_matrix(world.customers))
    _, native_s = timed(lambda: scorer.predict(features))
    _, onnx_s = timed(lambda: bundle.predict(features))
    results: dict[str, object] = {
        "customers": world.n,
        "scorer": type(scorer).__name__,
        "score_and_decide_s": round(total_s, 2),
        "of_which_features_s": round(features_s, 2),
        "of_which_scoring_s": round(native_s, 2),
        "decide_and_rest_s": round(total_s - features_s - native_s, 2),
        "baseline_onnx_bundle_score_and_decide_s": round(bundle_total_s, 2),
        "onnx_bundle_scoring_s": round(onnx_s, 2),
        "onnx_vs_native_scoring": round(onnx_s / native_s, 2),
        "bundle_over_native_score_and_decide": round(bundle_total_s / total_s, 2),
        "same_actions_as_bundle": round(float(np.mean(on_bundle.action == decisions.action)), 6),
        "actions": int((decisions.action != 0).sum()),
        "spend": round(float(decisions.cost.sum())),
        "budget": budget,
        "meets_30s_target": total_s < 30.0,
        "peak_rss_mb_after_score_all": rss_after_score_all,
        "world_build_s_not_counted": round(build_s, 2),
    }
    world.customers.to_parquet(root / "customers.parquet", index=False)
    results["nba_score_all_command"] = _command(root, registry, budget)
    if args.spark_partitions:
        results["spark_local"] = _on_spark(
            root, registry, world.customers, budget, args.spark_partitions, decisions
        )
    if args.session_variants:
        results["onnx_session_variants_s"] = _session_variants(registry, features)
    path = write_result(
        "batch_scoring",
        {
            "customers": args.customers,
            "learner": args.learner,
            "onnx": "parts of the rows on every core, one thread each",
            "spark_partitions": args.spark_partitions,
        },
        results,
    )
    print(json.dumps(results, indent=2))
    print(f"written: {path}")


def _command(root: Path, registry: Registry, budget: float) -> dict[str, float]:
    """`nba score --all` on the same base as a process, as an operator runs it: its whole wall
    time (imports, reading the parquet, writing the decisions with their reasons) and peak RSS."""
    env = {**os.environ, "NBA_MODEL_REGISTRY": str(registry.root)}
    argv = [sys.executable, "-m", "nba", "score", "--all", "--data", str(root)]
    argv += ["--out", str(root / "decisions.parquet"), "--budget", f"{budget:.0f}"]
    return measured_run(argv, env)


def _on_spark(
    root: Path,
    registry: Registry,
    snapshot: pd.DataFrame,
    budget: float,
    partitions: int,
    single: Decisions,
) -> dict[str, object]:
    """The same snapshot scored and decided on Spark in local mode (all cores): seconds from
    reading the parquet to the decisions, without the JVM's start; identical decisions?"""
    path = root / "customers.parquet"
    spark, start_s = timed(lambda: spark_session("local[*]"))
    try:
        (ids, decisions, _), spark_s = timed(
            lambda: score_all_spark(
                spark, path, registry.root, default_catalog(), PolicyConfig(), budget, partitions
            )
        )
    finally:
        spark.stop()
    same = (
        ids["customer_id"].tolist() == snapshot["customer_id"].astype(str).tolist()
        and np.array_equal(decisions.action, single.action)
        and np.array_equal(decisions.expected_value, single.expected_value)
        and np.array_equal(decisions.arm, single.arm)
    )
    return {
        "partitions": partitions,
        "score_and_decide_s": round(spark_s, 2),
        "session_start_s_not_counted": round(start_s, 2),
        "identical_decisions": bool(same),
    }


def _session_variants(registry: Registry, features: NDArray[np.float32]) -> dict[str, float]:
    """The bundle's scoring time under other onnxruntime settings (same rows, same outputs)."""
    bundle = str(registry.bundle_path("bench"))

    def session(intra: int, parallel_nodes: bool = False) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra
        if parallel_nodes:  # the bundle's tree ensembles are independent nodes
            options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
            options.inter_op_num_threads = 0
        return ort.InferenceSession(bundle, options, providers=["CPUExecutionProvider"])

    def run(chosen: ort.InferenceSession, chunk: int) -> None:
        for start in range(0, len(features), chunk):
            chosen.run(list(OUTPUTS), {"features": features[start : start + chunk]})

    variants = {
        "all_cores_one_call": (session(0), len(features)),
        "all_cores_chunks_of_100k": (session(0), 100_000),
        "parallel_nodes_one_thread_each": (session(1, parallel_nodes=True), len(features)),
        "one_thread": (session(1), len(features)),
    }
    return {
        name: round(timed(partial(run, chosen, chunk))[1], 2)
        for name, (chosen, chunk) in variants.items()
    }


if __name__ == "__main__":
    main()
