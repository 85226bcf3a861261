"""The scorer of batch mode: the native XGBoost models a bundle was checked against.

ONNX is the stream's format: one small call per micro-batch, the same graph everywhere. For a
whole base, onnxruntime's tree ensembles take about twice XGBoost's own time on the same rows
(benchmarks/batch_scoring.py; a treelite/tl2cgen compiled model was slower than XGBoost too,
measured 2026-12-04), so batch scoring serves the native models that the registry keeps beside
each bundle (``native.json``, its checksum in the manifest). They are the models whose outputs
the export's parity gate held the bundle to (1e-5): batch and stream score the same model, and
XGBoost's per-row sums do not depend on threads or on how the rows are split, so a base scored
in parts (Spark) decides exactly as one pass does. A version exported before the registry kept
native models is scored with its bundle.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from model_export.features import FEATURES
from model_export.learners import TreeModel
from model_export.manifest import Registry
from model_export.native import native_models
from model_export.serving import BundleScorer, Predictions
from policies.catalog import Catalog
from policies.errors import ModelManifestError

__all__ = ["NativeScorer", "batch_scorer"]


class NativeScorer:
    """``BundleScorer``'s interface over a registered version's native models."""

    def __init__(
        self, registry: Registry, catalog: Catalog, version: str | None, threads: int
    ) -> None:
        """``threads``: XGBoost's threads per call (0: every core)."""
        chosen = registry.chosen(version)
        self.manifest = registry.verified(chosen)
        self.manifest.check_serves(FEATURES, catalog.names)
        payload = registry.native(self.manifest)
        if payload is None:
            raise ModelManifestError(f"model {chosen} keeps no native models: re-export it")
        self._churn, self._retention, self._expansion = native_models(payload)
        jobs = None if threads == 0 else threads
        for model in self._models():
            model.set_params(n_jobs=jobs)
        self._actions = len(catalog.names)

    def _models(self) -> list[TreeModel]:
        learners = [m for m in (self._retention, self._expansion) if m is not None]
        return [self._churn.model_, *(t for m in learners for t in m.models_.values())]

    @property
    def version(self) -> str:
        return self.manifest.version

    def predict(self, features: NDArray[np.float32]) -> Predictions:
        zeros = np.zeros((len(features), self._actions))
        return (
            self._churn.predict_proba(features),
            zeros if self._retention is None else self._retention.predict_uplift(features),
            zeros if self._expansion is None else self._expansion.predict_uplift(features),
        )


def batch_scorer(
    registry: Registry, catalog: Catalog, version: str | None = None, threads: int = 0
) -> NativeScorer | BundleScorer:
    """The version's native models, or its ONNX bundle when it keeps none."""
    manifest = registry.verified(registry.chosen(version))
    if manifest.native_sha256 is None:
        return BundleScorer(registry, catalog, manifest.version, threads=threads)
    return NativeScorer(registry, catalog, manifest.version, threads)
