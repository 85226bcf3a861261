"""`nba experiment report`, `nba ope`, `nba retrain`: the loop closed from the engine's topics.

The decisions come from `nba-actions`, the outcomes from `outcomes` (both read to their end);
messages that do not parse are counted, not fatal. Off-policy evaluation needs each logged
customer's features: a snapshot parquet (``customers.parquet``, as `nba simulate world` writes
and as a feature export would), read at evaluation time.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console

from feedback.champion_challenger import Promotion, off_policy_log, promote_if_better
from feedback.decision_report import ReportContext, model_views, render_decision_report
from feedback.experiments import stratified_assignment
from feedback.log_training import experiment_from_log
from feedback.ope import Estimate
from feedback.readout import Feedback
from model_export.features import feature_matrix, training_frame
from model_export.manifest import Registry
from model_export.runs import export_run
from model_export.serving import BundleScorer
from nba.commands.files import write_output
from nba.commands.models import run_training
from nba.topic_reader import read_topic
from policies.arms import ArmConfig
from policies.catalog import Catalog, default_catalog
from policies.errors import ConfigError, ModelManifestError
from stream_app.settings import Settings
from stream_app.topic_log import feedback_from_messages

__all__ = [
    "assign_base",
    "decision_report",
    "load_feedback",
    "logging_model",
    "read_snapshot",
    "render_estimates",
    "render_report",
    "retrain",
]


def load_feedback(settings: Settings) -> Feedback:
    """Both topics, read to their end now."""
    return feedback_from_messages(
        read_topic(settings, settings.topic_actions), read_topic(settings, settings.topic_outcomes)
    )


def read_snapshot(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError):
        raise ConfigError(
            f"cannot read the feature snapshot {path} (customers.parquet of `nba simulate world`)"
        ) from None


def _line(name: str, result: dict[str, Any]) -> str:
    if result.get("status") == "no data":
        return f"{name:<28} no data ({', '.join(result.get('arms_without_data', []))} empty)"
    low, high = result["lift_abs_ci"]
    rates = result["retention"]
    flag = "" if result["status"] == "ok" else "  [UNDERPOWERED]"
    sizes = result["customers"]
    return (
        f"{name:<28} n {sizes['treatment']:>6,} / {sizes['holdout']:>5,}"
        f"  retention {rates['treatment']['rate']:.3f} vs {rates['holdout']['rate']:.3f}"
        f"  lift {100 * result['lift_abs']:+.2f} pts [{100 * low:+.2f}, {100 * high:+.2f}]"
        f"  p {result['p_value']:.3g}  power {result['achieved_power']:.2f}{flag}"
    )


def render_report(report: dict[str, Any]) -> str:
    """The experiment report as text: overall, per segment, per action, guardrails, quality."""
    overall = report["overall"]
    lines = ["treatment vs holdout (n treatment / holdout)", _line("overall", overall)]
    if overall.get("status") != "no data":
        lines.append(
            f"{'':<28} spend ${overall['spend']:,.0f}, incremental saves "
            f"{overall['incremental_saves']:,.1f}, cost per save "
            + (f"${overall['cost_per_save']:,.0f}" if overall["cost_per_save"] else "n/a")
            + ", ROI "
            + (f"{overall['roi']:.2f}" if overall["roi"] is not None else "n/a")
        )
    lines.append("by segment")
    lines += [_line(f"  {k}", v) for k, v in report["by_segment"].items()]
    lines.append("by action (what the policy chose, or would have chosen for the holdout)")
    lines += [_line(f"  {k}", v) for k, v in report["by_action"].items()]
    lines.append("guardrails")
    for rail in report["guardrails"]:
        if rail["status"] == "no data":
            lines.append(f"  {rail['outcome_type']:<26} no data")
            continue
        lines.append(
            f"  {rail['outcome_type']:<26} {rail['treatment_rate']:.4f} vs "
            f"{rail['holdout_rate']:.4f} (allowed +{rail['max_increase']:.4f}): "
            f"{rail['status'].upper()}"
        )
    arms = ", ".join(f"{k} {v:,}" for k, v in report["arms"].items())
    lines.append(
        f"arms with outcomes: {arms}; model versions: {', '.join(report['model_versions'])}"
    )
    quality = {k: v for k, v in report["data_quality"].items() if v}
    lines.append("data quality: " + ", ".join(f"{k} {v}" for k, v in quality.items()))
    return "\n".join(lines)


def render_estimates(found: dict[str, dict[str, Estimate]]) -> str:
    lines = [f"{'policy':<20} {'estimator':<7} {'value/decision':>15}  95% CI"]
    for name, estimates in found.items():
        for estimate in estimates.values():
            lines.append(
                f"{name:<20} {estimate.estimator:<7} {estimate.value:>15,.2f}  "
                f"[{estimate.ci_low:,.2f}, {estimate.ci_high:,.2f}]  (n {estimate.n:,})"
            )
    return "\n".join(lines)


def logging_model(registry: Registry, catalog: Catalog) -> BundleScorer:
    """The champion: the model whose decisions are in the log (its reward model for DR)."""
    if registry.champion() is None:
        raise ModelManifestError(
            f"no promoted model in {registry.root}: nba export, then nba models promote"
        )
    return BundleScorer(registry, catalog, threads=0)


TRAINING_SOURCES = ("both", "log", "experiment")
PROPENSITY_LEARNERS = ("dr", "r", "ct")


def check_training_source(source: str, learner: str) -> None:
    """A bad --source or learner, refused before any topic is read."""
    if source not in TRAINING_SOURCES:
        raise ConfigError(f"--source must be one of {', '.join(TRAINING_SOURCES)}, not {source!r}")
    if source != "experiment" and learner in PROPENSITY_LEARNERS:
        raise ConfigError(
            f"learner {learner!r} weights by one propensity per action, which the engine's log "
            "(holdout and exploration, each with its own) does not have: use sp, s, t or x, "
            "or --source experiment"
        )


def retraining_frame(
    feedback: Feedback, snapshot: pd.DataFrame, data_dir: Path, settings: Settings, source: str
) -> tuple[pd.DataFrame, str]:
    """What a challenger learns from, and a line saying so: the engine's randomized arms
    (feedback.log_training), data_dir's experiment.parquet, or both (``source``, checked by
    check_training_source)."""
    parts: list[pd.DataFrame] = []
    notes: list[str] = []
    if source in ("both", "experiment"):
        experiment = training_frame(data_dir, "experiment")
        parts.append(experiment)
        notes.append(f"experiment.parquet {len(experiment):,}")
    if source in ("both", "log"):
        arms = ArmConfig(holdout_share=settings.holdout_share, explore_share=settings.explore_share)
        log = experiment_from_log(feedback.joined, snapshot, default_catalog(), arms)
        parts.append(log.frame)
        notes.append(
            f"the engine's log: holdout {log.holdout_rows:,} + explore {log.explore_rows:,} "
            f"decisions with outcomes ({log.without_features:,} without features as of "
            f"their time; {log.explore_cut:,} explored picks cut by a limit left out)"
        )
    frame = pd.concat(parts, join="inner", ignore_index=True)
    if frame.empty:
        raise ConfigError("nothing to train on: no randomized decision with outcomes and features")
    return frame, "training rows: " + "; ".join(notes)


def retrain(
    settings: Settings,
    data_dir: Path,
    learner: str,
    seed: int,
    margin: float,
    console: Console,
    source: str = "both",
) -> Promotion:
    """Train a challenger on the engine's own randomized decisions (with ``source`` "both",
    also on the newest experiment.parquet), register it, evaluate it off-policy against the
    champion on the logged decisions, promote it only if it wins."""
    check_training_source(source, learner)
    registry = Registry(settings.model_registry)
    catalog = default_catalog()
    served = logging_model(registry, catalog)
    feedback = load_feedback(settings)
    snapshot = read_snapshot(data_dir / "customers.parquet")
    training, note = retraining_frame(feedback, snapshot, data_dir, settings, source)
    console.print(note)
    data = off_policy_log(feedback.joined, snapshot, served, catalog)
    version = f"retrain-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    folder = run_training(
        data_dir,
        learner,
        seed,
        settings.model_registry.parent / "runs" / version,
        console,
        experiment=training,
    )
    export_run(folder, registry, version)
    return promote_if_better(registry, catalog, data, version, margin)


def decision_report(
    settings: Settings, data_dir: Path | None, out: Path, feedback: Feedback | None = None
) -> Path:
    """The HTML decision report from the topics (or from ``feedback`` already read from them);
    with ``data_dir`` (customers.parquet) and a promoted model it adds the Qini curve and the
    feature drift of the decided customers."""
    feedback = feedback if feedback is not None else load_feedback(settings)
    report = feedback.report()
    qini, drift = None, None
    registry = Registry(settings.model_registry)
    if data_dir is not None and registry.champion() is not None:
        snapshot = read_snapshot(data_dir / "customers.parquet")
        qini, drift = model_views(feedback.joined, snapshot, registry)
    context = ReportContext(
        settings.budget_period,
        settings.budget,
        feedback.decisions,
        datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
    numbers = out.with_suffix(".json")
    page = render_decision_report(report, feedback.joined, context, qini, drift, numbers.name)
    write_output(numbers, lambda path: path.write_text(json.dumps(report, indent=2, default=str)))
    return write_output(out, lambda path: path.write_text(page))


def assign_base(
    settings: Settings, base: Path, holdout_share: float, seed: int, out: Path
) -> pd.DataFrame:
    """Stratified treatment/holdout assignment of a base, churn risk from the promoted model."""
    snapshot = read_snapshot(base)
    scorer = logging_model(Registry(settings.model_registry), default_catalog())
    p_churn, _, _ = scorer.predict(feature_matrix(snapshot))
    assignment = stratified_assignment(
        snapshot["customer_id"].astype(str),
        pd.Series(p_churn),
        snapshot["contract_value"].reset_index(drop=True),
        snapshot["tenure_months"].reset_index(drop=True),
        holdout_share,
        seed,
    )
    write_output(out, lambda path: assignment.to_parquet(path, index=False))
    return assignment
