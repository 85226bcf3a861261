"""`nba experiment report`, `nba ope`, `nba retrain`: the loop closed from the engine's topics.

The decisions come from `nba-actions`, the outcomes from `outcomes` (both read to their end);
messages that do not parse are counted, not fatal. Off-policy evaluation needs each logged
customer's features: a snapshot parquet (``customers.parquet``, as `nba simulate world` writes
and as a feature export would), read at evaluation time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pydantic import BaseModel, ValidationError
from rich.console import Console

from feedback.decision_report import QiniInput, render_decision_report
from feedback.drift import DriftReference, DriftTracker
from feedback.experiments import stratified_assignment
from feedback.ope import Estimate, OffPolicyLog, compare, evaluate_policy
from feedback.readout import JoinQuality, experiment_report, join_feedback
from model_export.features import FEATURES, feature_matrix
from model_export.manifest import Registry
from model_export.runs import export_run
from nba.commands.models import run_training
from nba.commands.score import score_all
from nba.topic_reader import read_topic
from policies.arms import ArmConfig
from policies.catalog import Catalog, default_catalog
from policies.decide import CAPACITY_EXHAUSTED, Decisions, PolicyConfig
from policies.errors import ConfigError, ModelManifestError
from policies.value import expected_value
from stream_app.messages import NbaAction, Outcome
from stream_app.scorer import BundleScorer
from stream_app.settings import Settings

__all__ = [
    "Feedback",
    "OffPolicyData",
    "assign_base",
    "candidate_decisions",
    "decision_report",
    "Promotion",
    "evaluate_candidates",
    "load_feedback",
    "logging_model",
    "off_policy_log",
    "promote_if_better",
    "render_estimates",
    "render_report",
    "retrain",
]


@dataclass(frozen=True)
class Feedback:
    """The joined log, what the join left out, and messages that did not parse."""

    joined: pd.DataFrame
    quality: JoinQuality
    unreadable: dict[str, int] = field(default_factory=dict)

    def report(self, alpha: float = 0.05) -> dict[str, Any]:
        report = experiment_report(self.joined, self.quality, alpha)
        report["data_quality"]["unreadable_messages"] = self.unreadable
        return report


def _parse(values: Iterable[bytes], model: type[BaseModel]) -> tuple[list[dict[str, Any]], int]:
    rows, bad = [], 0
    for value in values:
        try:
            rows.append(model.model_validate_json(value).model_dump(mode="json"))
        except ValidationError:
            bad += 1
    return rows, bad


def _frame(rows: list[dict[str, Any]], columns: Iterable[str]) -> pd.DataFrame:
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=list(columns))


def feedback_from_messages(actions: Iterable[bytes], outcomes: Iterable[bytes]) -> Feedback:
    action_rows, bad_actions = _parse(actions, NbaAction)
    outcome_rows, bad_outcomes = _parse(outcomes, Outcome)
    joined, quality = join_feedback(
        _frame(action_rows, NbaAction.model_fields),
        _frame(outcome_rows, Outcome.model_fields),
    )
    return Feedback(joined, quality, {"nba-actions": bad_actions, "outcomes": bad_outcomes})


def load_feedback(settings: Settings) -> Feedback:
    """Both topics, read to their end now."""
    return feedback_from_messages(
        read_topic(settings, settings.topic_actions), read_topic(settings, settings.topic_outcomes)
    )


@dataclass(frozen=True)
class OffPolicyData:
    """The treatment and exploration decisions with features, aligned row by row."""

    log: OffPolicyLog
    snapshot: pd.DataFrame  # the logged customers' features, one row per decision
    spend: float
    # [decision, action]: actions that had run out when the decision was made. The logging
    # policy could not choose them, so a candidate replayed on this log may not either: its
    # value there could only come from the reward model, unchecked by any outcome.
    unavailable: NDArray[np.bool_]


def _with_features(
    decisions: pd.DataFrame, snapshot: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The decisions whose customer is in the snapshot, and those customers' snapshot rows,
    aligned row by row."""
    features = snapshot.assign(customer_id=snapshot["customer_id"].astype(str))
    known = features.drop_duplicates("customer_id").set_index("customer_id", drop=False)
    ids = decisions["customer_id"].astype(str)
    rows = decisions[ids.isin(known.index)].reset_index(drop=True)
    frame = known.loc[rows["customer_id"].astype(str).tolist()].reset_index(drop=True)
    return rows, frame


def off_policy_log(
    joined: pd.DataFrame, snapshot: pd.DataFrame, logging_model: BundleScorer, catalog: Catalog
) -> OffPolicyData:
    """Rewards (retained contract value + expansion revenue - cost) of the logged decisions,
    and a reward model from the logging model's scores: value x (1 - p_churn) + EV(action)."""
    rows, frame = _with_features(joined[joined["arm"].isin(["treatment", "explore"])], snapshot)
    if rows.empty:
        raise ConfigError(
            "no treatment or exploration decision with outcomes has features in the snapshot"
        )
    names = list(catalog.names)
    action = np.asarray(rows["action"].map(names.index), dtype=np.int64)
    reward = (
        rows["retained"].to_numpy(float) * rows["value"].to_numpy(float)
        + rows["expansion"].to_numpy(float)
        - rows["cost"].to_numpy(float)
    )
    log = OffPolicyLog(
        action,
        rows["propensity"].to_numpy(float),
        reward,
        _reward_model(frame, logging_model, catalog),
    )
    return OffPolicyData(
        log, frame, float(rows["cost"].sum()), _unavailable(rows["reasons"], catalog)
    )


def _unavailable(reasons: pd.Series, catalog: Catalog) -> NDArray[np.bool_]:
    """[decision, action]: the `capacity_exhausted:<action>` reasons of each decision."""
    column = {f"{CAPACITY_EXHAUSTED}:{name}": k for k, name in enumerate(catalog.names)}
    mask = np.zeros((len(reasons), len(catalog.names)), dtype=bool)
    for row, codes in enumerate(reasons):
        for code in list(codes) if codes is not None else []:
            if code in column:
                mask[row, column[code]] = True
    return mask


def _reward_model(
    frame: pd.DataFrame, scorer: BundleScorer, catalog: Catalog
) -> NDArray[np.float64]:
    """Expected reward per [customer, action]: value x (1 - p_churn) + EV(action)."""
    p_churn, uplift, expansion_share = scorer.predict(feature_matrix(frame))
    value = frame["contract_value"].to_numpy(np.float64)
    ev = expected_value(
        np.clip(uplift, -1.0, 1.0),
        expansion_share * value[:, None],
        value,
        catalog.cost_matrix(value),
    )
    return (value * (1.0 - p_churn))[:, None] + ev


def candidate_decisions(
    data: OffPolicyData, scorer: BundleScorer, catalog: Catalog, budget: float
) -> Decisions:
    """A candidate's treatment policy alone (no holdout, no exploration) over the logged
    customers, choosing only among the actions that were available at each decision."""
    policy = PolicyConfig(catalog=catalog, arms=ArmConfig(holdout_share=0.0, explore_share=0.0))
    return score_all(data.snapshot, scorer, policy, budget, unavailable=data.unavailable)


def evaluate_candidates(
    data: OffPolicyData,
    registry: Registry,
    catalog: Catalog,
    versions: dict[str, str],
    budget_factor: float = 1.0,
    alpha: float = 0.05,
) -> dict[str, dict[str, Estimate]]:
    """Each named model version's treatment policy at the logged spend x ``budget_factor``."""
    if budget_factor <= 0:
        raise ConfigError("--budget-factor must be > 0")
    found = {}
    for name, version in versions.items():
        scorer = BundleScorer(registry, catalog, version, threads=0)
        target = candidate_decisions(data, scorer, catalog, data.spend * budget_factor).action
        found[name] = evaluate_policy(data.log, target, alpha)
    return found


class Promotion(BaseModel):
    champion: str
    challenger: str
    champion_value: float
    challenger_value: float
    difference: float
    difference_ci: tuple[float, float]
    margin: float
    promoted: bool
    reason: str


def promote_if_better(
    registry: Registry,
    catalog: Catalog,
    data: OffPolicyData,
    challenger: str,
    margin: float,
    alpha: float = 0.05,
) -> Promotion:
    """Promote ``challenger`` only if its DR value per decision beats the champion's by more
    than ``margin`` dollars and the paired difference's CI lies above zero."""
    champion = registry.champion()
    if champion is None:
        raise ModelManifestError("no champion to compare with; promote one first")
    found = evaluate_candidates(
        data, registry, catalog, {"champion": champion, "challenger": challenger}, alpha=alpha
    )
    difference = compare(found["challenger"]["dr"], found["champion"]["dr"], alpha)
    wins = difference.value > margin and difference.ci_low > 0
    if wins:
        registry.promote(challenger)
    reason = (
        "won: DR difference above the margin with its CI above zero"
        if wins
        else f"kept the champion: DR difference {difference.value:+,.2f} "
        f"(CI {difference.ci_low:+,.2f} .. {difference.ci_high:+,.2f}) vs margin {margin:,.2f}"
    )
    return Promotion(
        champion=champion,
        challenger=challenger,
        champion_value=found["champion"]["dr"].value,
        challenger_value=found["challenger"]["dr"].value,
        difference=difference.value,
        difference_ci=(difference.ci_low, difference.ci_high),
        margin=margin,
        promoted=wins,
        reason=reason,
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


def retrain(
    settings: Settings, data_dir: Path, learner: str, seed: int, margin: float, console: Console
) -> Promotion:
    """Train a challenger on the newest experiment data, register it, evaluate it off-policy
    against the champion on the engine's own logged decisions, promote it only if it wins."""
    registry = Registry(settings.model_registry)
    catalog = default_catalog()
    served = logging_model(registry, catalog)
    feedback = load_feedback(settings)
    snapshot = read_snapshot(data_dir / "customers.parquet")
    data = off_policy_log(feedback.joined, snapshot, served, catalog)
    version = f"retrain-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    folder = run_training(
        data_dir, learner, seed, settings.model_registry.parent / "runs" / version, console
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
        qini, drift = _model_views(feedback.joined, snapshot, registry)
    page = render_decision_report(
        report, feedback.joined, "NBA decision report", settings.budget, qini, drift
    )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page)
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror}") from None
    return out


def _model_views(
    joined: pd.DataFrame, snapshot: pd.DataFrame, registry: Registry
) -> tuple[QiniInput | None, dict[str, float] | None]:
    """Qini input (retained, predicted uplift of the policy's pick, treated) over the A/B rows
    whose pick is an action, and each feature's PSI over the decided customers."""
    catalog = default_catalog()
    scorer = BundleScorer(registry, catalog, threads=0)
    rows, frame = _with_features(joined, snapshot)
    if rows.empty:
        return None, None
    features = feature_matrix(frame)
    _, uplift, _ = scorer.predict(features)
    reference = DriftReference.read(registry.folder(scorer.version))
    drift = None
    if reference is not None:
        tracker = DriftTracker(reference, half_life_rows=float("inf"))
        tracker.observe(features, FEATURES, {})
        drift = tracker.feature_psi()
    names = list(catalog.names)
    pick = rows["policy_pick"].map(lambda a: names.index(a) if a in names else 0).to_numpy()
    ab = rows["arm"].isin(["treatment", "holdout"]).to_numpy() & (pick > 0)
    score = uplift[np.arange(len(rows)), pick]
    qini = (
        rows["retained"].to_numpy(float)[ab],
        score[ab],
        (rows["arm"] == "treatment").to_numpy(int)[ab],
    )
    return qini, drift


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
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        assignment.to_parquet(out, index=False)
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror}") from None
    return assignment
