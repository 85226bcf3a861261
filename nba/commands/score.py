"""`nba score --all`: score and decide for a whole customer base in one vectorized pass, with the
same bundle and the same policy as the stream (features from a snapshot or the offline store)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from model_export.features import engagement_score, feature_matrix, logins_per_seat, policy_scores
from policies.arms import Arm
from policies.catalog import CHANNELS
from policies.decide import Decisions, PolicyConfig, decide_batch
from policies.rules import ContactState
from policies.segments import SEGMENTS
from stream_app.scorer import BundleScorer

__all__ = ["decisions_frame", "score_all"]


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


def write_decisions(frame: pd.DataFrame, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out, index=False)
    return out
