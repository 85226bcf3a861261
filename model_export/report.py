"""The evaluation report: one self-contained HTML page (plots inlined as PNG) that a data
scientist opens in a browser: Qini curves per action, the churn model's calibration, feature
importance, and every metric."""

from __future__ import annotations

import base64
import html
import io
import json
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402

from model_export.evaluation import qini_points  # noqa: E402
from model_export.project_models import ProjectTrained  # noqa: E402
from model_export.training import Trained  # noqa: E402

__all__ = ["STYLE", "figure_html", "png", "render_report"]


def png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def _labels(trained: Trained | ProjectTrained) -> tuple[str, str]:
    """(the outcome, what the baseline model predicts), as the axes name them."""
    if isinstance(trained, ProjectTrained):
        return trained.outcome.replace("_", " "), "no response"
    return "retained", "churn"


def _qini_figure(trained: Trained | ProjectTrained) -> str:
    curves = trained.curves
    figure, axes = plt.subplots(
        1, len(trained.actions) - 1, figsize=(4 * (len(trained.actions) - 1), 3.4)
    )
    for a, axis in enumerate(np.atleast_1d(axes), start=1):
        rows = (curves["treatment"] == a) | (curves["treatment"] == 0)
        x, y = qini_points(
            curves["y"][rows],
            curves["uplift"][rows, a],
            (curves["treatment"][rows] == a).astype(int),
        )
        axis.plot(x, y, label=trained.learner.upper())
        axis.plot([0, x[-1]], [0, y[-1]], "--", color="grey", label="random")
        axis.set_title(trained.actions[a], fontsize=9)
        axis.set_xlabel("customers targeted")
        axis.legend(fontsize=7)
    axes_list = np.atleast_1d(axes)
    axes_list[0].set_ylabel(f"incremental {_labels(trained)[0]} (Qini)")
    return png(figure)


def _calibration_figure(trained: Trained | ProjectTrained) -> str:
    curves = trained.curves
    control = curves["control"]
    baseline = _labels(trained)[1]
    churned = curves["y"][control] <= 0
    prob_true, prob_pred = calibration_curve(
        churned, curves["p_churn"][control], n_bins=10, strategy="quantile"
    )
    figure, axis = plt.subplots(figsize=(4, 3.4))
    axis.plot(prob_pred, prob_true, "o-", label="XGBoost + Platt")
    axis.plot([0, 1], [0, 1], "--", color="grey", label="perfect")
    axis.set_xlabel(f"predicted {baseline} probability")
    axis.set_ylabel(f"observed {baseline} rate")
    axis.legend(fontsize=7)
    return png(figure)


def _importance_figure(trained: Trained | ProjectTrained) -> str:
    importance = list(trained.metrics["feature_importance"].items())[:15]
    figure, axis = plt.subplots(figsize=(5, 4))
    axis.barh([k for k, _ in reversed(importance)], [v for _, v in reversed(importance)])
    axis.set_xlabel(f"share of total gain ({_labels(trained)[1]} model)")
    return png(figure)


STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:1400px} pre{background:#f4f4f4;padding:1em}"
)


def figure_html(caption: str, png_base64: str) -> str:
    alt = html.escape(caption)
    return f'<h2>{alt}</h2>\n<img src="data:image/png;base64,{png_base64}" alt="{alt}">'


def render_report(trained: Trained | ProjectTrained, title: str) -> str:
    metrics = html.escape(json.dumps(trained.metrics, indent=2))
    images = [
        ("Qini curves, held-out randomized data", _qini_figure(trained)),
        (
            f"{_labels(trained)[1].capitalize()} calibration (control rows)",
            _calibration_figure(trained),
        ),
        ("Feature importance", _importance_figure(trained)),
    ]
    sections = "\n".join(figure_html(caption, data) for caption, data in images)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{STYLE}</style>
</head><body>
<h1>{html.escape(title)}</h1>
<p>Learner: <b>{html.escape(trained.learner.upper())}</b>;
actions: {html.escape(", ".join(trained.actions))}.</p>
{sections}
<h2>Metrics</h2>
<pre>{metrics}</pre>
</body></html>
"""
