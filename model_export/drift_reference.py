"""The training reference of the drift gauges, written next to each exported bundle.

``drift_reference.json``: per feature and per score, the decile edges of the training hold-out
sample and the share of that sample in each bin. The worker and the decision report bin live data
on the same edges and compare (``feedback.drift``). It lives here because `nba export` writes it
with the bundle; the comparison itself is the feedback loop's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from policies.errors import SchemaError

__all__ = [
    "REFERENCE_FILE",
    "ColumnReference",
    "DriftReference",
    "bin_counts",
    "build_reference",
]

_BINS = 10
REFERENCE_FILE = "drift_reference.json"


class ColumnReference(BaseModel):
    model_config = ConfigDict(frozen=True)

    edges: tuple[float, ...]  # inner edges; len(shares) == len(edges) + 1
    shares: tuple[float, ...]


class DriftReference(BaseModel):
    model_config = ConfigDict(frozen=True)

    features: dict[str, ColumnReference]
    scores: dict[str, ColumnReference]

    @classmethod
    def read(cls, folder: Path) -> DriftReference | None:
        path = folder / REFERENCE_FILE
        return cls.model_validate_json(path.read_text()) if path.exists() else None


def bin_counts(values: NDArray[np.float64], edges: Sequence[float]) -> NDArray[np.float64]:
    finite = values[np.isfinite(values)]
    index = np.searchsorted(np.asarray(edges), finite, side="right")
    return np.bincount(index, minlength=len(edges) + 1).astype(np.float64)


def _column(values: NDArray[np.float64]) -> ColumnReference:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise SchemaError("a drift reference needs finite values in every column")
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, _BINS + 1)[1:-1]))
    counts = bin_counts(finite, edges.tolist())
    return ColumnReference(
        edges=tuple(float(e) for e in edges),
        shares=tuple(float(s) for s in counts / counts.sum()),
    )


def build_reference(
    features: NDArray[np.float32],
    feature_names: Sequence[str],
    scores: dict[str, NDArray[np.float64]],
) -> DriftReference:
    """Decile bins of each feature column and each score, from the training sample."""
    if features.ndim != 2 or features.shape[1] != len(feature_names):
        raise SchemaError("features must be [rows, len(feature_names)]")
    data = features.astype(np.float64)
    return DriftReference(
        features={name: _column(data[:, j]) for j, name in enumerate(feature_names)},
        scores={name: _column(np.asarray(v, np.float64)) for name, v in scores.items()},
    )
