"""The model's feature vector: names, order and dtype, built from a customer snapshot.

The order here is the contract with the ONNX bundle (recorded in its manifest) and, once the
Feast repository exists, with the `nba_scoring` feature service. Training frames come from the
simulator's parquet today, behind ``training_frame`` (point-in-time Feast joins replace it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from policies.decide import Scores
from policies.errors import SchemaError

__all__ = [
    "FEATURES",
    "engagement_score",
    "feature_matrix",
    "logins_per_seat",
    "policy_scores",
    "share_at_or_below",
    "training_frame",
]

COUNT_FEATURES = (
    "logins_30d",
    "features_used_30d",
    "support_tickets_90d",
    "max_ticket_severity_90d",
    "billing_failures_90d",
    "pricing_page_views_30d",
    "seats_added_90d",
    "seats_removed_90d",
    "days_since_last_login",
    "exports_30d",
    "admin_changes_30d",
    "days_to_renewal",
    "seats",
    "tenure_months",
)
_PLANS = ("starter", "growth", "enterprise")
_CONSENTS = ("consent_email", "consent_phone", "consent_in_app")
FEATURES: tuple[str, ...] = (
    *COUNT_FEATURES,
    "log_contract_value",
    "nps_last",  # -1 when the account never answered
    "nps_missing",
    *(f"plan_{p}" for p in _PLANS),
    *_CONSENTS,
)
_REQUIRED = (*COUNT_FEATURES, "contract_value", "nps_last", "plan", *_CONSENTS)


def feature_matrix(snapshot: pd.DataFrame) -> NDArray[np.float32]:
    """[customers, FEATURES] as float32, in manifest order; missing columns are an error."""
    missing = [c for c in _REQUIRED if c not in snapshot.columns]
    if missing:
        raise SchemaError(f"the snapshot lacks column(s) {missing}")
    # Column by column: selecting a list of columns builds a frame (~0.2 ms each time), a
    # worker's micro-batch pays it on every batch.
    numeric = _stacked(snapshot, COUNT_FEATURES)
    if np.any(~np.isfinite(numeric)):
        bad = [
            c for c in COUNT_FEATURES if not np.all(np.isfinite(snapshot[c].to_numpy(dtype=float)))
        ]
        raise SchemaError(f"feature column(s) {bad} hold NaN or infinite values")
    nps = snapshot["nps_last"].to_numpy(dtype=np.float64)
    plan = snapshot["plan"].astype(str).to_numpy()
    columns = [
        numeric,
        np.log1p(snapshot["contract_value"].to_numpy(dtype=np.float64))[:, None],
        np.where(np.isnan(nps), -1.0, nps)[:, None],
        np.isnan(nps).astype(np.float64)[:, None],
        np.column_stack([(plan == p).astype(np.float64) for p in _PLANS]),
        _stacked(snapshot, _CONSENTS),
    ]
    return np.hstack(columns).astype(np.float32)


def _stacked(frame: pd.DataFrame, names: Sequence[str]) -> NDArray[np.float64]:
    """[rows, names] as float64, read a column at a time."""
    return np.column_stack([frame[name].to_numpy(dtype=np.float64) for name in names])


def training_frame(data_dir: Path, name: str = "experiment") -> pd.DataFrame:
    """A training frame written by `nba simulate world` (experiment, history or customers)."""
    path = data_dir / f"{name}.parquet"
    if not path.exists():
        raise SchemaError(
            f"{path} does not exist; write it with `nba simulate world --out {data_dir}`"
        )
    return pd.read_parquet(path)


def engagement_score(
    snapshot: pd.DataFrame, reference: NDArray[np.float64] | None = None
) -> NDArray[np.float64]:
    """Logins per seat as a percentile in [0, 1]: the engagement axis of the segments.

    ``reference`` is the sorted logins-per-seat of the whole base, so that a micro-batch is
    ranked against the base rather than against itself; without it the frame is its own base."""
    logins = logins_per_seat(snapshot)
    if reference is None:
        return np.asarray(pd.Series(logins).rank(pct=True), dtype=np.float64)
    return share_at_or_below(reference, logins)


def share_at_or_below(
    reference: NDArray[np.float64], values: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Each value's percentile in the base: the share of the sorted ``reference`` at or below
    it (the engagement axis of the segments, for the simulated world and for a project)."""
    return np.searchsorted(reference, values, side="right") / max(len(reference), 1)


def logins_per_seat(snapshot: pd.DataFrame) -> NDArray[np.float64]:
    seats = np.maximum(snapshot["seats"].to_numpy(np.float64), 1.0)
    return np.asarray(snapshot["logins_30d"].to_numpy(np.float64) / seats, dtype=np.float64)


def policy_scores(
    snapshot: pd.DataFrame,
    decision_keys: list[str],
    p_churn: NDArray[np.float64],
    uplift: NDArray[np.float64],
    expansion_share: NDArray[np.float64],
    engagement: NDArray[np.float64],
) -> Scores:
    """The policy's input from the model's outputs: expansion as a share of the contract value
    becomes dollars, uplift is clipped to a probability change."""
    value = snapshot["contract_value"].to_numpy(np.float64)
    return Scores(
        customer_ids=snapshot["customer_id"].astype(str).tolist(),
        decision_keys=decision_keys,
        p_churn=p_churn,
        uplift_retention=np.clip(uplift, -1.0, 1.0),
        uplift_expansion=expansion_share * value[:, None],
        customer_value=value,
        engagement=engagement,
    )
