"""The ONNX bundle as the engine serves it: loaded through its manifest, one call per batch.

At start the manifest is verified (checksum, parity) and checked against the feature vector the
engine builds and the catalog's actions; a mismatch is a ModelManifestError, so a worker never
serves a model that reads its inputs in another order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnxruntime as ort
import pandas as pd
from numpy.typing import NDArray

from model_export.bundle import OUTPUTS
from model_export.features import FEATURES, engagement_score, feature_matrix, policy_scores
from model_export.manifest import Manifest, Registry
from policies.catalog import Catalog
from policies.decide import Scores
from policies.errors import ModelManifestError

__all__ = ["BundleScorer", "SnapshotScoreSource"]


class BundleScorer:
    def __init__(self, registry: Registry, catalog: Catalog, version: str | None = None) -> None:
        chosen = version or registry.champion()
        if chosen is None:
            raise ModelManifestError(
                f"no promoted model in {registry.root}; run `nba models promote <version>`"
            )
        self.manifest: Manifest = registry.verified(chosen)
        self.manifest.check_serves(FEATURES, catalog.names)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # one worker, one core: scale out with workers
        self._session = ort.InferenceSession(
            str(registry.bundle_path(chosen)), options, providers=["CPUExecutionProvider"]
        )

    @property
    def version(self) -> str:
        return self.manifest.version

    def predict(
        self, features: NDArray[np.float32]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """(p_churn [n], uplift [n, actions], expansion share [n, actions]) in one call."""
        p_churn, uplift, expansion = self._session.run(list(OUTPUTS), {"features": features})
        return (
            np.asarray(p_churn[:, 0], dtype=np.float64),
            np.asarray(uplift, dtype=np.float64),
            np.asarray(expansion, dtype=np.float64),
        )


class SnapshotScoreSource:
    """Scores from the bundle for customers of a snapshot frame (the features the online store
    would hold), one inference call per batch."""

    def __init__(self, snapshot: pd.DataFrame, scorer: BundleScorer) -> None:
        self._scorer = scorer
        self._snapshot = snapshot.reset_index(drop=True)
        self._features = feature_matrix(self._snapshot)
        self._engagement = engagement_score(self._snapshot)
        self._index = {c: i for i, c in enumerate(self._snapshot["customer_id"].astype(str))}

    def scores(self, customers: Sequence[str], event_ids: Sequence[str]) -> Scores:
        rows = np.array([self._index[c] for c in customers], dtype=np.int64)
        p_churn, uplift, expansion_share = self._scorer.predict(self._features[rows])
        return policy_scores(
            self._snapshot.iloc[rows],
            list(event_ids),
            p_churn,
            uplift,
            expansion_share,
            self._engagement[rows],
        )
