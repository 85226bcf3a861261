"""The decision report: one self-contained HTML page a marketing lead can open.

Lift by arm with confidence intervals (overall and per segment), the Qini curve of the served
model on the randomized comparison, spend against the budget over time, decisions by segment
and action, feature drift, the guardrails and what the data-quality checks left out. Plots are
inlined PNGs (model_export.report's helpers), so the file travels by e-mail.
"""

from __future__ import annotations

import html
import json
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from feedback.drift import DriftTracker  # noqa: E402
from feedback.readout import with_features  # noqa: E402
from model_export.drift_reference import DriftReference  # noqa: E402
from model_export.evaluation import qini_points  # noqa: E402
from model_export.features import FEATURES, feature_matrix  # noqa: E402
from model_export.manifest import Registry  # noqa: E402
from model_export.report import STYLE, figure_html, png  # noqa: E402
from model_export.serving import BundleScorer  # noqa: E402
from policies.catalog import default_catalog  # noqa: E402

__all__ = ["QiniInput", "model_views", "render_decision_report"]

QiniInput = tuple[np.ndarray, np.ndarray, np.ndarray]  # (retained, uplift score, treated)


def _lift_figure(report: dict[str, Any]) -> str:
    groups = {"overall": report["overall"], **report["by_segment"]}
    shown = {k: v for k, v in groups.items() if v.get("status") != "no data"}
    figure, (rates, lifts) = plt.subplots(1, 2, figsize=(12, 3.6))
    figure.subplots_adjust(wspace=0.45)  # room for the segment names between the panels
    overall = report["overall"]
    if overall.get("status") != "no data":
        for k, arm in enumerate(("treatment", "holdout")):
            rate = overall["retention"][arm]["rate"]
            low, high = overall["retention"][arm]["ci"]
            rates.bar(k, rate, yerr=[[rate - low], [high - rate]], capsize=6)
        rates.set_xticks([0, 1], ["treatment", "holdout"])
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
    axis.set_xlabel("customers targeted (by predicted uplift)")
    axis.set_ylabel("incremental retained (Qini)")
    axis.legend(fontsize=7)
    return png(figure)


def _spend_figure(joined: pd.DataFrame, budget: float | None) -> str:
    ordered = joined.sort_values("decided_at")
    figure, axis = plt.subplots(figsize=(6, 3.4))
    axis.plot(ordered["decided_at"], ordered["cost"].cumsum(), label="reserved spend")
    if budget is not None:
        axis.axhline(budget, color="red", linestyle="--", label="period budget")
    axis.set_ylabel("dollars")
    axis.legend(fontsize=7)
    figure.autofmt_xdate()
    return png(figure)


def _segment_figure(joined: pd.DataFrame) -> str:
    table = pd.crosstab(joined["segment"], joined["action"])
    figure, axis = plt.subplots(figsize=(7, 3.6))
    left = np.zeros(len(table))
    for action in table.columns:
        axis.barh(table.index, table[action], left=left, label=action)
        left += table[action].to_numpy()
    axis.set_xlabel("decisions")
    axis.legend(fontsize=7)
    return png(figure)


def _drift_figure(drift: dict[str, float]) -> str:
    ordered = sorted(drift.items(), key=lambda kv: kv[1])
    figure, axis = plt.subplots(figsize=(6, max(3.0, 0.22 * len(ordered))))
    values = [v for _, v in ordered]
    colors = ["tab:red" if v > 0.25 else "tab:orange" if v > 0.1 else "tab:green" for v in values]
    axis.barh([k for k, _ in ordered], values, color=colors)
    axis.axvline(0.1, color="orange", linestyle="--")
    axis.axvline(0.25, color="red", linestyle="--")
    axis.set_xlabel("PSI vs training data (0.1 moderate, 0.25 act)")
    return png(figure)


def _headline(report: dict[str, Any]) -> str:
    overall = report["overall"]
    if overall.get("status") == "no data":
        return "<p><b>No comparison yet:</b> an arm has no decisions with outcomes.</p>"
    low, high = overall["lift_abs_ci"]
    verdict = "UNDERPOWERED: " if overall["status"] == "underpowered" else ""
    roi = f"{overall['roi']:.2f}" if overall["roi"] is not None else "n/a"
    return (
        f"<p><b>{verdict}Retention lift {100 * overall['lift_abs']:+.2f} points</b> "
        f"(95% CI {100 * low:+.2f} to {100 * high:+.2f}, p = {overall['p_value']:.3g}, "
        f"power {overall['achieved_power']:.2f}); spend ${overall['spend']:,.0f}, "
        f"incremental saves {overall['incremental_saves']:,.1f}, ROI {roi}.</p>"
    )


def _guardrails(report: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(r['outcome_type'])}</td><td>{html.escape(r['status'])}</td>"
        f"<td>{r.get('treatment_rate', float('nan')):.4f}</td>"
        f"<td>{r.get('holdout_rate', float('nan')):.4f}</td></tr>"
        for r in report["guardrails"]
    )
    return (
        "<h2>Guardrails</h2><table><tr><th>outcome</th><th>status</th>"
        f"<th>treatment</th><th>holdout</th></tr>{rows}</table>"
    )


def render_decision_report(
    report: dict[str, Any],
    joined: pd.DataFrame,
    title: str,
    budget: float | None = None,
    qini: QiniInput | None = None,
    drift: dict[str, float] | None = None,
) -> str:
    """``report`` from feedback.readout.experiment_report; ``joined`` its decisions."""
    images = [("Lift by arm and by segment", _lift_figure(report))]
    if qini is not None and qini[0].size and len(np.unique(qini[2])) == 2:
        images.append(("Qini curve of the served model (treatment vs holdout)", _qini_figure(qini)))
    if not joined.empty:
        images.append(("Spend against the budget", _spend_figure(joined, budget)))
        images.append(("Decisions by segment and action", _segment_figure(joined)))
    if drift:
        images.append(("Feature drift", _drift_figure(drift)))
    sections = "\n".join(figure_html(caption, data) for caption, data in images)
    details = html.escape(json.dumps(report, indent=2, default=str))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{STYLE} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:4px}}</style>
</head><body>
<h1>{html.escape(title)}</h1>
{_headline(report)}
{sections}
{_guardrails(report)}
<h2>Every number</h2>
<pre>{details}</pre>
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
