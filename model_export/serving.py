"""The ONNX bundle outside a stream worker: loaded through its manifest, one call per batch, and
a whole customer base scored and decided in one vectorized pass with the same policy as the
stream (`nba score --all`, off-policy evaluation of candidates, the decision report).

At load the manifest is verified (checksum, parity) and checked against the feature vector the
engine builds and the catalog's actions; a mismatch is a ModelManifestError, so nothing serves a
model that reads its inputs in another order.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pandas as pd
from numpy.typing import NDArray

from model_export.bundle import OUTPUTS
from model_export.features import (
    FEATURES,
    engagement_score,
    feature_matrix,
    logins_per_seat,
    policy_scores,
)
from model_export.manifest import Manifest, Registry
from policies.arms import Arm
from policies.catalog import CHANNELS, Catalog
from policies.decide import Decisions, PolicyConfig, decide_batch
from policies.rules import ContactState
from policies.segments import SEGMENTS

__all__ = ["BundleScorer", "Predictions", "decisions_frame", "score_all"]

Predictions = tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]


class BundleScorer:
    def __init__(
        self,
        registry: Registry,
        catalog: Catalog,
        version: str | None = None,
        threads: int = 1,
        features: tuple[str, ...] = FEATURES,
    ) -> None:
        """``threads``: onnxruntime intra-op threads; 1 for a stream worker (scale out with
        workers), 0 for batch scoring (onnxruntime then uses every core). ``features``: the
        columns the caller will feed, in order (a project's design matrix names its own)."""
        chosen = registry.chosen(version)
        self.manifest: Manifest = registry.verified(chosen)
        self.manifest.check_serves(features, catalog.names)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(
            str(registry.bundle_path(chosen)), options, providers=["CPUExecutionProvider"]
        )

    @property
    def version(self) -> str:
        return self.manifest.version

    def predict(self, features: NDArray[np.float32]) -> Predictions:
        """(p_churn [n], uplift [n, actions], expansion share [n, actions]) in one call."""
        p_churn, uplift, expansion = self._session.run(list(OUTPUTS), {"features": features})
        return (
            np.asarray(p_churn[:, 0], dtype=np.float64),
            np.asarray(uplift, dtype=np.float64),
            np.asarray(expansion, dtype=np.float64),
        )


def score_all(
    snapshot: pd.DataFrame,
    scorer: BundleScorer,
    policy: PolicyConfig,
    budget: float,
    unavailable: NDArray[np.bool_] | None = None,
) -> Decisions:
    """One bundle call and one allocation for every customer of the snapshot (``unavailable``:
    [customer, action] choices ruled out on top of the contact rules)."""
    features = feature_matrix(snapshot)
    p_churn, uplift, expansion_share = scorer.predict(features)
    ids = snapshot["customer_id"].astype(str).tolist()
    engagement = engagement_score(snapshot, np.sort(logins_per_seat(snapshot)))
    scores = policy_scores(
        snapshot, [f"batch:{c}" for c in ids], p_churn, uplift, expansion_share, engagement
    )
    consent = np.column_stack([snapshot[f"consent_{c}"].to_numpy(bool) for c in CHANNELS])
    state = ContactState.fresh(len(ids), consent)
    return decide_batch(scores, state, policy, budget, unavailable=unavailable)


def decisions_frame(
    snapshot: pd.DataFrame, decisions: Decisions, model_version: str
) -> pd.DataFrame:
    names = np.asarray(decisions.catalog.names)
    return pd.DataFrame(
        {
            "customer_id": snapshot["customer_id"].astype(str).to_numpy(),
            "action": names[decisions.action],
            "expected_value": decisions.expected_value,
            "uplift": decisions.uplift,
            "p_churn": decisions.p_churn,
            "customer_value": decisions.customer_value,
            "cost": decisions.cost,
            "segment": np.asarray(SEGMENTS)[decisions.segment],
            "arm": np.asarray([a.label for a in Arm])[decisions.arm],
            "propensity": decisions.propensity,
            "model_version": model_version,
            "policy_version": decisions.policy_version,
        }
    )
