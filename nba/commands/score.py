"""`nba score --all`: the whole base scored and decided in one pass (``model_export.serving``),
its inputs checked before any model is loaded, the decisions written as parquet."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from model_export.batch_serving import batch_scorer
from model_export.features import logins_per_seat
from model_export.manifest import Registry
from model_export.serving import base_scores, decisions_frame, score_all
from nba.commands.files import write_output
from policies.arms import ArmConfig
from policies.catalog import default_catalog
from policies.decide import PolicyConfig, decide_batch
from policies.errors import ConfigError, ModelManifestError
from stream_app.settings import load_settings

if TYPE_CHECKING:  # imported where used: a plain run imports neither Feast nor the engine
    from ingest.project import Project
    from stream_app.batch_publish import BatchPublication

__all__ = [
    "BatchRun",
    "SparkOptions",
    "check_inputs",
    "score_base",
    "score_project_base",
    "write_decisions",
]


def check_inputs(data_dir: Path, registry: Registry) -> Path:
    """The snapshot to score, or one clear error: a missing file or no promoted model."""
    snapshot = data_dir / "customers.parquet"
    if not snapshot.is_file():
        raise ConfigError(
            f"{snapshot} not found: --data must be a folder with customers.parquet "
            "(as `nba simulate world` writes)"
        )
    if registry.champion() is None:
        raise ModelManifestError(
            f"no promoted model in {registry.root} (NBA_MODEL_REGISTRY): "
            "nba train, nba export, nba models promote"
        )
    return snapshot


@dataclass(frozen=True)
class SparkOptions:
    """Where `--engine spark` runs: a Spark master URL (``local[N]``, ``spark://host:7077``,
    ``yarn``...) and how many tasks score the base."""

    master: str = "local[*]"
    partitions: int = 8


@dataclass(frozen=True)
class BatchRun:
    decisions: pd.DataFrame
    path: Path
    seconds: float
    model_version: str
    publication: BatchPublication | None = None


def score_base(
    data_dir: Path,
    registry: Registry,
    budget: float,
    out: Path,
    spark: SparkOptions | None = None,
    publish: str | None = None,
) -> BatchRun:
    """The whole snapshot scored and decided on this machine, or with ``spark`` on Spark (the
    same decisions: model_export.spark_scoring). ``publish``: a run id ("" for the default),
    to decide under the engine's ledger and contact history and publish the decisions
    (stream_app.batch_publish)."""
    path = check_inputs(data_dir, registry)
    if spark is not None:
        return _score_on_spark(path, registry, budget, out, spark)
    if publish is not None:
        return _score_and_publish(path, registry, budget, out, publish)
    scorer = batch_scorer(registry, default_catalog())
    snapshot = _read(path)
    started = time.perf_counter()
    decisions = score_all(snapshot, scorer, PolicyConfig(), budget)
    elapsed = time.perf_counter() - started
    frame = decisions_frame(snapshot, decisions, scorer.version)
    return BatchRun(frame, write_decisions(frame, out), elapsed, scorer.version)


def _score_and_publish(
    path: Path, registry: Registry, budget: float, out: Path, run_id: str
) -> BatchRun:
    from stream_app.batch_publish import EngineState, default_run_id
    from stream_app.worker import policy_config

    settings = load_settings()
    policy = policy_config(settings)  # the stream's arms and experiment
    state = EngineState(settings, policy)
    scorer = batch_scorer(registry, policy.catalog)
    snapshot = _read(path)
    run = run_id or default_run_id(settings.budget_period, path)
    now = datetime.now(UTC)
    started = time.perf_counter()
    scores, consent = base_scores(snapshot, scorer, np.sort(logins_per_seat(snapshot)))
    customers = list(scores.customer_ids)
    contacts = state.contact_state(consent, customers, now)
    allowed = min(budget, state.budget_left())
    decisions = decide_batch(scores, contacts, policy, allowed, state.capacity_left())
    publication = state.publish(customers, decisions, scorer.version, run, now)
    elapsed = time.perf_counter() - started
    frame = decisions_frame(snapshot, decisions, scorer.version)
    return BatchRun(frame, write_decisions(frame, out), elapsed, scorer.version, publication)


def _read(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None


def _score_on_spark(
    path: Path, registry: Registry, budget: float, out: Path, options: SparkOptions
) -> BatchRun:
    try:
        from model_export.spark_scoring import score_all_spark, spark_session
    except ImportError:
        raise ConfigError(
            "--engine spark needs pyspark: pip install 'nba-engine[spark]' (and Java 17)"
        ) from None
    spark = spark_session(options.master)
    try:
        started = time.perf_counter()
        ids, decisions, version = score_all_spark(
            spark,
            path,
            registry.root,
            default_catalog(),
            PolicyConfig(),
            budget,
            options.partitions,
        )
        elapsed = time.perf_counter() - started
    finally:
        spark.stop()
    frame = decisions_frame(ids, decisions, version)
    return BatchRun(frame, write_decisions(frame, out), elapsed, version)


def score_project_base(
    project: Project,
    data: Path,
    registry: Registry,
    budget: float,
    out: Path,
    clv: pd.DataFrame | None = None,
) -> BatchRun:
    """The import's whole customers table, with the promoted project bundle and the project's
    policy (holdout and exploration as the settings say)."""
    from features.project_repo import scoring_frame
    from ingest.importer import imported_manifest, imported_table
    from model_export.project_serving import ProjectScorer, score_project

    settings = load_settings()
    policy = project.policy_config(
        ArmConfig(holdout_share=settings.holdout_share, explore_share=settings.explore_share)
    )
    scorer = ProjectScorer.load(registry, project, policy.catalog)
    customers = scoring_frame(project, data)
    tables = imported_manifest(data)["tables"]
    events = imported_table(data, "events") if project.opt_outs and "events" in tables else None
    started = time.perf_counter()
    decisions = score_project(customers, project, scorer, policy, budget, clv, events)
    elapsed = time.perf_counter() - started
    frame = decisions_frame(customers, decisions, scorer.version)
    return BatchRun(frame, write_decisions(frame, out), elapsed, scorer.version)


def write_decisions(frame: pd.DataFrame, out: Path) -> Path:
    return write_output(out, lambda path: frame.to_parquet(path, index=False))
