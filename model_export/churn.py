"""Churn propensity: XGBoost on the untreated outcome, class imbalance weighted, Platt-calibrated.

P(churn | do nothing) is learned on control rows only (a treated account's outcome is not its
baseline risk). Calibration is Platt scaling on the logit of the raw probability, fitted on a
held-out split: ``p = sigmoid(a x logit(p_raw) + b)``; two numbers that the ONNX bundle applies
exactly (isotonic calibration would need a lookup table the bundle cannot carry as simply).
A logistic regression on the same features is the scikit-learn baseline.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit, logit
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from xgboost import XGBClassifier

from model_export.learners import base_model
from policies.errors import SchemaError

__all__ = ["ChurnModel", "baseline_churn_model"]

Floats = NDArray[np.float64]
_EPS = 1e-6


class ChurnModel:
    def __init__(self, seed: int = 0, n_estimators: int = 300) -> None:
        self.seed = seed
        self.n_estimators = n_estimators

    def fit(self, x: NDArray[np.float32], churned: NDArray[np.bool_]) -> ChurnModel:
        if np.unique(churned).size < 2:
            raise SchemaError("churn labels have a single class; nothing to learn")
        fit_x, cal_x, fit_y, cal_y = train_test_split(
            x, churned, test_size=0.25, random_state=self.seed, stratify=churned
        )
        positives = max(int(fit_y.sum()), 1)
        model = base_model("classifier", self.seed, self.n_estimators)
        model.set_params(scale_pos_weight=(fit_y.size - positives) / positives)  # class imbalance
        self.model_: XGBClassifier = model.fit(fit_x, fit_y.astype(int))
        raw = self._logit(self.model_.predict_proba(cal_x)[:, 1])
        platt = LogisticRegression(C=1e6).fit(raw[:, None], cal_y.astype(int))
        self.a_ = float(platt.coef_[0, 0])
        self.b_ = float(platt.intercept_[0])
        return self

    @staticmethod
    def _logit(p: Floats) -> Floats:
        return np.asarray(logit(np.clip(p, _EPS, 1 - _EPS)), dtype=np.float64)

    def predict_raw(self, x: NDArray[np.float32]) -> Floats:
        return np.asarray(self.model_.predict_proba(x)[:, 1], dtype=np.float64)

    def predict_proba(self, x: NDArray[np.float32]) -> Floats:
        return np.asarray(
            expit(self.a_ * self._logit(self.predict_raw(x)) + self.b_), dtype=np.float64
        )


def baseline_churn_model(x: NDArray[np.float32], churned: NDArray[np.bool_]) -> Pipeline:
    """The scikit-learn baseline: standardized logistic regression, balanced classes."""
    return make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=2_000, class_weight="balanced")
    ).fit(x, churned)
