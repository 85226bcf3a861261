"""The decision report: one self-contained HTML page a marketing lead can open.

It opens with the budget period, the budget, the model versions and when it was made; then
what was spent (every decision of the period) and what it earned (the A/B comparison, in the
words of feedback.campaign_summary), lift by arm with confidence intervals (overall and per
segment), the Qini curve of the served model on the randomized comparison, spend against the
budget over time, decisions by segment and action, feature drift and the guardrails. Plots are
inlined PNGs (model_export.report's helpers), so the file travels by e-mail; every number goes
to a JSON file beside the page (``report_numbers``), not onto it.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from feedback.campaign_summary import label, lift_in_words, money, spend_summary  # noqa: E402
from feedback.drift import DriftTracker  # noqa: E402
from feedback.readout import with_features  # noqa: E402
from model_export.drift_reference import DriftReference  # noqa: E402
from model_export.evaluation import qini_points  # noqa: E402
from model_export.features import FEATURES, feature_matrix  # noqa: E402
from model_export.manifest import Registry  # noqa: E402
from model_export.report import STYLE, figure_html, png  # noqa: E402
from model_export.serving import BundleScorer  # noqa: E402
from policies.catalog import default_catalog  # noqa: E402

__all__ = ["QiniInput", "ReportContext", "model_views", "render_decision_report"]

QiniInput = tuple[np.ndarray, np.ndarray, np.ndarray]  # (retained, uplift score, treated)
THOUSANDS = FuncFormatter(lambda value, _: f"{value:,.0f}")
DOLLARS = FuncFormatter(lambda value, _: money(value))


@dataclass(frozen=True)
class ReportContext:
    """What the page says it is about: the period, its budget, every decision of it (the
    joined frame holds only those whose outcome arrived) and when the page was made."""

    period: str
    budget: float | None
    decisions: pd.DataFrame
    generated_at: str


def _lift_figure(report: dict[str, Any]) -> str:
    groups = {"overall": report["overall"], **report["by_segment"]}
    shown = {label(k): v for k, v in groups.items() if v.get("status") != "no data"}
    figure, (rates, lifts) = plt.subplots(1, 2, figsize=(12, 3.6))
    figure.subplots_adjust(wspace=0.45)  # room for the segment names between the panels
    overall = report["overall"]
    if overall.get("status") != "no data":
        for k, arm in enumerate(("treatment", "holdout")):
            rate = overall["retention"][arm]["rate"]
            low, high = overall["retention"][arm]["ci"]
            rates.bar(k, rate, yerr=[[rate - low], [high - rate]], capsize=6)
        rates.set_xticks([0, 1], ["Treated", "Holdout"])
        rates.set_ylim(max(0.0, min(rates.get_ylim()[1] - 0.3, 0.5)), 1.0)
    rates.set_ylabel("retention rate (95% CI)")
    names = list(shown)
    values = [100 * shown[n]["lift_abs"] for n in names]
    errors = [
        [100 * (shown[n]["lift_abs"] - shown[n]["lift_abs_ci"][0]) for n in names],
        [100 * (shown[n]["lift_abs_ci"][1] - shown[n]["lift_abs"]) for n in names],
    ]
    lifts.errorbar(values, range(len(names)), xerr=errors, fmt="o", capsize=4)
    lifts.axvline(0.0, color="grey", linestyle="--")
    lifts.set_yticks(range(len(names)), names)
    lifts.set_xlabel("lift, treatment - holdout (points, 95% CI)")
    return png(figure)


def _qini_figure(qini: QiniInput) -> str:
    retained, score, treated = qini
    x, y = qini_points(retained.astype(float), score.astype(float), treated.astype(np.int64))
    figure, axis = plt.subplots(figsize=(5, 3.6))
    axis.plot(x, y, label="served model")
    axis.plot([0, x[-1]], [0, y[-1]], "--", color="grey", label="random")
    axis.set_xlabel("customers targeted, most promising first")
    axis.set_ylabel("extra customers kept (Qini)")
    axis.xaxis.set_major_formatter(THOUSANDS)
    axis.legend(fontsize=7)
    return png(figure)


def _spend_figure(joined: pd.DataFrame, budget: float | None) -> str:
    ordered = joined.assign(decided_at=pd.to_datetime(joined["decided_at"], utc=True))
    ordered = ordered.sort_values("decided_at")
    figure, axis = plt.subplots(figsize=(6, 3.4))
    axis.plot(ordered["decided_at"], ordered["cost"].cumsum(), label="spend")
    if budget is not None:
        axis.axhline(budget, color="red", linestyle="--", label="period budget")
    axis.set_ylabel("spend")
    axis.yaxis.set_major_formatter(DOLLARS)
    axis.legend(fontsize=7)
    figure.autofmt_xdate()
    return png(figure)


def _segment_figure(decisions: pd.DataFrame) -> str:
    """Side by side per segment (a small group stays visible), each bar labelled."""
    table = pd.crosstab(decisions["segment"], decisions["action"])
    figure, axis = plt.subplots(figsize=(8, 0.9 + 0.45 * table.size))
    height = 0.8 / max(len(table.columns), 1)
    rows = np.arange(len(table))
    for k, action in enumerate(table.columns):
        bars = axis.barh(rows + k * height, table[action], height, label=label(action))
        axis.bar_label(bars, labels=[f"{v:,}" for v in table[action]], padding=2, fontsize=7)
    axis.set_yticks(rows + 0.4 - height / 2, [label(s) for s in table.index])
    axis.invert_yaxis()
    axis.set_xlabel("decisions")
    axis.xaxis.set_major_formatter(THOUSANDS)
    axis.legend(fontsize=7)
    return png(figure)


def _drift_figure(drift: dict[str, float]) -> str:
    ordered = sorted(drift.items(), key=lambda kv: kv[1])
    figure, axis = plt.subplots(figsize=(6, max(3.0, 0.22 * len(ordered))))
    values = [v for _, v in ordered]
    colors = ["tab:red" if v > 0.25 else "tab:orange" if v > 0.1 else "tab:green" for v in values]
    axis.barh([label(k) for k, _ in ordered], values, color=colors)
    axis.axvline(0.1, color="orange", linestyle="--")
    axis.axvline(0.25, color="red", linestyle="--")
    axis.set_xlabel("PSI vs training data (0.1 moderate, 0.25 act)")
    return png(figure)


def _headline(report: dict[str, Any], context: ReportContext, joined: pd.DataFrame) -> str:
    spent = spend_summary(context.decisions, context.budget or 0.0)
    words = lift_in_words(report["overall"])
    budget = f" of the {money(context.budget)} budget" if context.budget is not None else ""
    covered = joined[joined["arm"] == "treatment"]["cost"].sum() if len(joined) else 0.0
    return (
        f"<h2>{html.escape(words['headline'])}</h2><p>{html.escape(words['detail'])}</p>"
        f"<p><b>{money(spent['spend'])} spent{budget}</b> on {spent['decisions']:,} decisions. "
        f"The comparison covers the {len(joined):,} decisions whose outcome is known so far; "
        f"their treated customers cost {money(covered)}.</p>"
    )


def _percent(rate: float | None) -> str:
    return "-" if rate is None or not np.isfinite(rate) else f"{100 * rate:.2f}%"


def _guardrails(report: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(label(r['outcome_type']))}</td>"
        f"<td>{html.escape(label(r['status']))}</td>"
        f"<td>{_percent(r.get('treatment_rate'))}</td><td>{_percent(r.get('holdout_rate'))}</td></tr>"
        for r in report["guardrails"]
    )
    return (
        "<h2>Guardrails</h2><table><tr><th>Outcome</th><th>Status</th>"
        f"<th>Treated</th><th>Holdout</th></tr>{rows}</table>"
    )


def render_decision_report(
    report: dict[str, Any],
    joined: pd.DataFrame,
    context: ReportContext,
    qini: QiniInput | None = None,
    drift: dict[str, float] | None = None,
    numbers_file: str | None = None,
) -> str:
    """``report`` from feedback.readout.experiment_report; ``joined`` its decisions with their
    outcomes; ``numbers_file``: the JSON file beside the page with every number."""
    images = [("Lift by arm and by segment", _lift_figure(report))]
    if qini is not None and qini[0].size and len(np.unique(qini[2])) == 2:
        images.append(("Qini curve of the served model (treated vs holdout)", _qini_figure(qini)))
    if not context.decisions.empty:
        images.append(
            ("Spend against the budget", _spend_figure(context.decisions, context.budget))
        )
        images.append(("Decisions by segment and action", _segment_figure(context.decisions)))
    if drift:
        images.append(("Feature drift", _drift_figure(drift)))
    sections = "\n".join(figure_html(caption, data) for caption, data in images)
    versions = ", ".join(sorted(context.decisions["model_version"].astype(str).unique()))
    budget = money(context.budget) if context.budget is not None else "not set"
    link = (
        f'<p><a href="{html.escape(numbers_file)}" download>Every number (JSON)</a></p>'
        if numbers_file
        else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Decision report</title>
<style>{STYLE} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:4px}}</style>
</head><body>
<h1>Decision report</h1>
<p>Budget period <b>{html.escape(context.period)}</b>, budget {budget}, model
{html.escape(versions or "none")}; made {html.escape(context.generated_at)}.</p>
{_headline(report, context, joined)}
{sections}
{_guardrails(report)}
{link}
</body></html>
"""


def model_views(
    joined: pd.DataFrame, snapshot: pd.DataFrame, registry: Registry
) -> tuple[QiniInput | None, dict[str, float] | None]:
    """Qini input (retained, predicted uplift of the policy's pick, treated) over the A/B rows
    whose pick is an action, and each feature's PSI over the decided customers."""
    catalog = default_catalog()
    scorer = BundleScorer(registry, catalog, threads=0)
    rows, frame = with_features(joined, snapshot)
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
