"""Evaluation of churn and uplift models.

Classification: ROC-AUC, PR-AUC (average precision), Brier score from scikit-learn; expected
calibration error from scikit-learn's ``calibration_curve`` bins (ECE itself is not in
scikit-learn: the bin-weighted mean gap is computed here). Uplift: Qini coefficient, AUUC and
uplift@k from scikit-uplift (``sklift.metrics``), per action against control, plus the checks
only a simulator allows: correlation with the true uplift and each customer's response type.
scikit-uplift takes binary outcomes only; for a continuous one (e.g. spend) the Qini and AUUC
are causalml's normalized ``qini_score`` / ``auuc_score``, and uplift@k is the same "overall"
difference of means in the top k that scikit-uplift computes.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.stats import spearmanr
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

__all__ = [
    "classification_report",
    "expected_calibration_error",
    "qini_points",
    "quiet_sklift",
    "response_types",
    "uplift_report",
]

Floats = NDArray[np.float64]


def expected_calibration_error(y: NDArray[np.bool_], p: Floats, bins: int = 10) -> float:
    prob_true, prob_pred = calibration_curve(y, p, n_bins=bins, strategy="quantile")
    counts = np.histogram(p, bins=np.quantile(p, np.linspace(0, 1, bins + 1)))[0]
    weights = counts[: prob_true.size] / max(counts.sum(), 1)
    return float(np.sum(weights * np.abs(prob_true - prob_pred)))


def classification_report(y: NDArray[np.bool_], p: Floats) -> dict[str, float]:
    return {
        "roc_auc": round(float(roc_auc_score(y, p)), 4),
        "pr_auc": round(float(average_precision_score(y, p)), 4),
        "brier": round(float(brier_score_loss(y, p)), 4),
        "ece": round(expected_calibration_error(y, p), 4),
        "base_rate": round(float(np.mean(y)), 4),
    }


@contextmanager
def quiet_sklift() -> Iterator[None]:
    # scikit-uplift 0.5.1 calls a scikit-learn helper deprecated in 1.8; harmless here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def qini_points(y: Floats, uplift: Floats, treated: NDArray[np.int64]) -> tuple[Floats, Floats]:
    """The Qini curve (customers targeted, incremental outcomes), from scikit-uplift."""
    from sklift.metrics import qini_curve

    with quiet_sklift():
        x, q = qini_curve(y, uplift, treated)
    return np.asarray(x, dtype=np.float64), np.asarray(q, dtype=np.float64)


def _binary_metrics(y: Floats, uplift: Floats, treated: NDArray[np.int64]) -> dict[str, float]:
    from sklift.metrics import qini_auc_score, uplift_at_k, uplift_auc_score

    with quiet_sklift():
        return {
            "qini": round(float(qini_auc_score(y, uplift, treated)), 5),
            "auuc": round(float(uplift_auc_score(y, uplift, treated)), 5),
            **{
                f"uplift_at_{k}": round(
                    float(uplift_at_k(y, uplift, treated, strategy="overall", k=k / 100)), 5
                )
                for k in (10, 20, 30)
            },
        }


def _continuous_metrics(y: Floats, uplift: Floats, treated: NDArray[np.int64]) -> dict[str, float]:
    from causalml.metrics import auuc_score, qini_score

    frame = pd.DataFrame({"y": y, "w": treated, "model": uplift})
    order = np.argsort(-uplift, kind="stable")
    metrics = {
        "qini": round(float(qini_score(frame, outcome_col="y", treatment_col="w")["model"]), 5),
        "auuc": round(float(auuc_score(frame, outcome_col="y", treatment_col="w")["model"]), 5),
    }
    for k in (10, 20, 30):
        top = order[: max(int(round(k / 100 * y.size)), 1)]
        arm, outcome = treated[top], y[top]
        both = arm.any() and (~arm.astype(bool)).any()
        difference = outcome[arm == 1].mean() - outcome[arm == 0].mean() if both else np.nan
        metrics[f"uplift_at_{k}"] = round(float(difference), 5)
    return metrics


def uplift_report(
    y: Floats,
    treatment: NDArray[np.int64],
    uplift: Floats,
    actions: tuple[str, ...],
    true_uplift: Floats | None = None,
) -> dict[str, dict[str, float]]:
    """Per action (vs control rows): Qini, AUUC, uplift@10/20/30%, and the true-effect checks."""
    binary = bool(np.isin(y, (0.0, 1.0)).all())
    report = {}
    for a in range(1, len(actions)):
        rows = (treatment == a) | (treatment == 0)
        ya, ta, ua = y[rows], (treatment[rows] == a).astype(int), uplift[rows, a]
        metrics = _binary_metrics(ya, ua, ta) if binary else _continuous_metrics(ya, ua, ta)
        if true_uplift is not None:
            metrics["spearman_vs_true"] = round(
                float(spearmanr(uplift[:, a], true_uplift[:, a]).statistic), 4
            )
        report[actions[a]] = metrics
    return report


def response_types(
    p_retain_control: Floats, p_retain_treated: Floats, threshold: float = 0.02
) -> NDArray[np.str_]:
    """Persuadable / sleeping dog / sure thing / lost cause from predicted retention probabilities:
    uplift above ``threshold`` persuades, below ``-threshold`` wakes a sleeping dog, otherwise the
    control probability decides between sure thing and lost cause."""
    uplift = p_retain_treated - p_retain_control
    return np.select(
        [uplift > threshold, uplift < -threshold, p_retain_control >= 0.5],
        ["persuadable", "sleeping_dog", "sure_thing"],
        default="lost_cause",
    )
