"""Population stability index (PSI) of the features and the scores, live vs the training data.

The reference (``model_export.drift_reference``) holds, per column, decile edges of the training
sample and the share of that sample in each bin. Live data is binned on the same edges and
compared: PSI = sum over bins of (live - ref) x ln(live / ref). Rule of thumb: below 0.1 stable,
0.1-0.25 moderate shift, above 0.25 a shift worth acting on.

Why hand-written: PSI is one line of numpy; the maintained packages that compute it (evidently,
nannyml) bring dashboards, their own data model and dozens of dependencies for that line.
Empty bins get a small floor (``_FLOOR``) so one unseen bin does not make the index infinite.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from model_export.drift_reference import ColumnReference, DriftReference, bin_counts

__all__ = ["DriftTracker", "psi"]

_FLOOR = 1e-4


def psi(reference: ColumnReference, counts: NDArray[np.float64]) -> float:
    """PSI of live bin counts against the reference shares (0 when nothing was counted)."""
    total = counts.sum()
    if total <= 0:
        return 0.0
    live = np.maximum(counts / total, _FLOOR)
    ref = np.maximum(np.asarray(reference.shares), _FLOOR)
    return float(np.sum((live - ref) * np.log(live / ref)))


class DriftTracker:
    """Live bin counts of every feature and score, over a sliding number of observations:
    counts decay so that the index follows the recent traffic, not all traffic since start."""

    def __init__(self, reference: DriftReference, half_life_rows: float = 20_000.0) -> None:
        self.reference = reference
        self._decay_per_row = 0.5 ** (1.0 / half_life_rows)
        self._counts = {
            name: np.zeros(len(ref.shares))
            for name, ref in {**reference.features, **reference.scores}.items()
        }

    def observe(
        self,
        features: NDArray[np.float32],
        feature_names: Sequence[str],
        scores: dict[str, NDArray[np.float64]],
    ) -> None:
        decay = self._decay_per_row ** features.shape[0]
        columns = {name: features[:, j] for j, name in enumerate(feature_names)}
        for name, ref in self.reference.features.items():
            if name in columns:
                self._add(name, ref, columns[name].astype(np.float64), decay)
        for name, ref in self.reference.scores.items():
            if name in scores:
                self._add(name, ref, np.asarray(scores[name], np.float64), decay)

    def _add(
        self, name: str, ref: ColumnReference, values: NDArray[np.float64], decay: float
    ) -> None:
        self._counts[name] = self._counts[name] * decay + bin_counts(values, ref.edges)

    def feature_psi(self) -> dict[str, float]:
        return {n: psi(r, self._counts[n]) for n, r in self.reference.features.items()}

    def score_psi(self) -> dict[str, float]:
        return {n: psi(r, self._counts[n]) for n, r in self.reference.scores.items()}
