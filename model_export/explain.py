"""Why a customer's risk is what it is: the features that moved the served baseline model, as
reason codes on each decision (``driver:<feature>:<+/-log-odds>``).

XGBoost's own TreeSHAP (``pred_contribs``) splits each prediction's raw log-odds exactly into one
contribution per feature plus a bias. The served probability is Platt-calibrated,
``sigmoid(a x logit(raw) + b)``, so ``a`` times each contribution is that feature's exact
additive share of the calibrated log-odds: positive raises the risk of no response (churn),
negative lowers it. The ONNX bundle cannot compute these, so a project bundle ships the baseline
model's XGBoost JSON beside it, under its checksum (model_export.manifest).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from xgboost import Booster, DMatrix

__all__ = ["Explainer"]


class Explainer:
    def __init__(self, model_json: bytes, feature_names: tuple[str, ...], platt_a: float) -> None:
        self._booster = Booster()
        self._booster.load_model(bytearray(model_json))
        self._names = feature_names
        self._scale = platt_a

    def contributions(self, x: NDArray[np.float32]) -> NDArray[np.float64]:
        """[customer, feature] shares of the calibrated log-odds of no response (no bias)."""
        raw = self._booster.predict(DMatrix(x), pred_contribs=True)
        return np.asarray(raw[:, :-1], dtype=np.float64) * self._scale

    def drivers(self, x: NDArray[np.float32], top: int = 3) -> list[list[str]]:
        """Per customer, the ``top`` features by absolute contribution, largest first."""
        shares = self.contributions(x)
        order = np.argsort(-np.abs(shares), axis=1, kind="stable")[:, :top]
        return [
            [f"driver:{self._names[j]}:{shares[i, j]:+.2f}" for j in row if shares[i, j] != 0]
            for i, row in enumerate(order)
        ]
