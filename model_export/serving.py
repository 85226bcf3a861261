"""The ONNX bundle outside a stream worker: loaded through its manifest, one call per batch, and
a whole customer base scored and decided in one vectorized pass with the same policy as the
stream (`nba score --all`, off-policy evaluation of candidates, the decision report).

At load the manifest is verified (checksum, parity) and checked against the feature vector the
engine builds and the catalog's actions; a mismatch is a ModelManifestError, so nothing serves a
model that reads its inputs in another order.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

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
from policies.decide import Decisions, PolicyConfig, Scores, decide_batch
from policies.rules import ContactState
from policies.segments import SEGMENTS

__all__ = [
    "BundleScorer",
    "Predictions",
    "Scorer",
    "base_scores",
    "decisions_frame",
    "score_all",
]

_PARALLEL_ROWS = 20_000  # fewer rows are scored in one call: threads would cost more than they save
Predictions = tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]


class Scorer(Protocol):
    """What scores a batch: the bundle (`BundleScorer`) or, in batch mode, the native models it
    was checked against (model_export.batch_serving)."""

    @property
    def version(self) -> str: ...

    def predict(self, features: NDArray[np.float32]) -> Predictions: ...


class BundleScorer:
    def __init__(
        self,
        registry: Registry,
        catalog: Catalog,
        version: str | None = None,
        threads: int = 1,
        features: tuple[str, ...] = FEATURES,
    ) -> None:
        """``threads``: 1 for a stream worker (scale out with workers); 0 for batch scoring,
        which then scores parts of the rows on every core at once. Each call of the session
        runs on one onnxruntime thread either way: with several, a row's tree outputs are
        summed in another order (float32 results differ in the 7th digit), whereas one thread
        per part gives every row the same scores however the rows are split, so a base scored
        in parts elsewhere (`model_export.spark_scoring`) decides exactly as here.
        ``features``: the columns the caller will feed, in order (a project's design matrix
        names its own)."""
        chosen = registry.chosen(version)
        self.manifest: Manifest = registry.verified(chosen)
        self.manifest.check_serves(features, catalog.names)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(registry.bundle_path(chosen)), options, providers=["CPUExecutionProvider"]
        )
        self._parts = (os.cpu_count() or 1) if threads == 0 else threads

    @property
    def version(self) -> str:
        return self.manifest.version

    def predict(self, features: NDArray[np.float32]) -> Predictions:
        """(p_churn [n], uplift [n, actions], expansion share [n, actions]): one session call,
        or one per part of the rows on as many threads (onnxruntime releases the GIL)."""
        if self._parts == 1 or len(features) < _PARALLEL_ROWS:
            outputs = self._session.run(list(OUTPUTS), {"features": features})
        else:
            parts = np.array_split(features, self._parts * 4)  # 4 per thread: even finish
            with ThreadPoolExecutor(self._parts) as pool:
                done = list(
                    pool.map(
                        lambda rows: self._session.run(list(OUTPUTS), {"features": rows}), parts
                    )
                )
            outputs = [np.concatenate([d[k] for d in done]) for k in range(len(OUTPUTS))]
        p_churn, uplift, expansion = outputs
        return (
            np.asarray(p_churn[:, 0], dtype=np.float64),
            np.asarray(uplift, dtype=np.float64),
            np.asarray(expansion, dtype=np.float64),
        )


def score_all(
    snapshot: pd.DataFrame,
    scorer: Scorer,
    policy: PolicyConfig,
    budget: float,
    unavailable: NDArray[np.bool_] | None = None,
) -> Decisions:
    """One bundle call and one allocation for every customer of the snapshot (``unavailable``:
    [customer, action] choices ruled out on top of the contact rules)."""
    scores, consent = base_scores(snapshot, scorer, np.sort(logins_per_seat(snapshot)))
    state = ContactState.fresh(len(scores.customer_ids), consent)
    return decide_batch(scores, state, policy, budget, unavailable=unavailable)


def base_scores(
    customers: pd.DataFrame, scorer: Scorer, reference: NDArray[np.float64]
) -> tuple[Scores, NDArray[np.bool_]]:
    """The policy's input and each channel's consent for some customers of a base: per customer,
    whatever other rows are scored with it (``reference``: the whole base's sorted logins per
    seat, for the engagement percentile), so that a base may be scored in parts anywhere."""
    p_churn, uplift, expansion_share = scorer.predict(feature_matrix(customers))
    ids = customers["customer_id"].astype(str).tolist()
    engagement = engagement_score(customers, reference)
    scores = policy_scores(
        customers, [f"batch:{c}" for c in ids], p_churn, uplift, expansion_share, engagement
    )
    consent = np.column_stack([customers[f"consent_{c}"].to_numpy(bool) for c in CHANNELS])
    return scores, consent


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
            "reasons": decisions.all_reasons(),
        }
    )
