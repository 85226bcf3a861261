"""The Feast feature repository: entity, sources, feature views and the `nba_scoring` service.

Objects are named by role (Feast's template style). Their parquet sources live in a data folder
chosen at run time (``definitions(data_dir)``), so tests and the demo each use their own.

- `profile` (batch `customer_profile_source`): plan, seats, contract value, tenure, renewal,
  consent;
- `engagement_stream` (`engagement_push_source`, with a parquet batch copy): activity counts and
  recency, pushed by the engine as events arrive;
- `clv`, `rfm`, `persona` (batch jobs in features/jobs.py): BG/NBD + Gamma-Gamma 12-month CLV,
  RFM scores and segment, the persona cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Bool, Float64, Int64, String

__all__ = ["PROFILE_FIELDS", "ENGAGEMENT_FIELDS", "Definitions", "definitions"]

TIMESTAMP = "event_timestamp"
PROFILE_FIELDS: dict[str, object] = {
    "plan": String,
    "seats": Int64,
    "contract_value": Float64,
    "tenure_months": Float64,
    "days_to_renewal": Int64,
    "nps_last": Float64,
    "consent_email": Bool,
    "consent_phone": Bool,
    "consent_in_app": Bool,
}
ENGAGEMENT_FIELDS: dict[str, object] = {
    "logins_30d": Int64,
    "features_used_30d": Int64,
    "support_tickets_90d": Int64,
    "max_ticket_severity_90d": Int64,
    "billing_failures_90d": Int64,
    "pricing_page_views_30d": Int64,
    "seats_added_90d": Int64,
    "seats_removed_90d": Int64,
    "days_since_last_login": Int64,
    "exports_30d": Int64,
    "admin_changes_30d": Int64,
    "events_1h": Int64,
    "events_24h": Int64,
    "events_7d": Int64,
    "distinct_features_7d": Int64,
}
CLV_FIELDS: dict[str, object] = {
    "clv_12m": Float64,
    "expected_purchases_12m": Float64,
    "p_alive": Float64,
}
RFM_FIELDS: dict[str, object] = {
    "recency_days": Int64,
    "frequency": Int64,
    "monetary": Float64,
    "rfm_score": Int64,
    "rfm_segment": String,
}
PERSONA_FIELDS: dict[str, object] = {"persona": Int64}


@dataclass(frozen=True)
class Definitions:
    customer: Entity
    views: dict[str, FeatureView]
    push_source: PushSource
    nba_scoring: FeatureService

    def objects(self) -> list[Any]:
        return [self.customer, *self.views.values(), self.push_source, self.nba_scoring]


def _fields(spec: dict[str, object]) -> list[Field]:
    return [Field(name=name, dtype=dtype) for name, dtype in spec.items()]  # type: ignore[arg-type]  # feast types


def _file_source(name: str, data_dir: Path) -> FileSource:
    return FileSource(
        name=f"{name}_source",
        path=str((data_dir / f"{name}.parquet").resolve()),
        timestamp_field=TIMESTAMP,
    )


def _job_view(
    name: str, customer: Entity, fields: dict[str, object], data_dir: Path
) -> FeatureView:
    """A view over one batch job's output: recomputed daily, valid for about a year."""
    return FeatureView(
        name=name,
        entities=[customer],
        ttl=timedelta(days=400),
        schema=_fields(fields),
        source=_file_source(name, data_dir),
    )


def definitions(data_dir: Path) -> Definitions:
    customer = Entity(
        name="customer",
        join_keys=["customer_id"],
        value_type=ValueType.STRING,
        description="a customer account",
    )
    profile_source = FileSource(
        name="customer_profile_source",
        path=str((data_dir / "profile.parquet").resolve()),
        timestamp_field=TIMESTAMP,
    )
    engagement_batch = _file_source("engagement", data_dir)
    push_source = PushSource(name="engagement_push_source", batch_source=engagement_batch)
    views = {
        "profile": FeatureView(
            name="profile",
            entities=[customer],
            ttl=timedelta(days=400),
            schema=_fields(PROFILE_FIELDS),
            source=profile_source,
        ),
        "engagement_stream": FeatureView(
            name="engagement_stream",
            entities=[customer],
            ttl=timedelta(days=30),
            schema=_fields(ENGAGEMENT_FIELDS),
            source=push_source,
        ),
        **{
            name: _job_view(name, customer, fields, data_dir)
            for name, fields in (
                ("clv", CLV_FIELDS),
                ("rfm", RFM_FIELDS),
                ("persona", PERSONA_FIELDS),
            )
        },
    }
    nba_scoring = FeatureService(
        name="nba_scoring",
        features=[
            views["profile"],
            views["engagement_stream"],
            views["clv"],
            views["rfm"],
            views["persona"],
        ],
        description="all one decision reads; model_export.features builds the model vector from it",
    )
    return Definitions(customer, views, push_source, nba_scoring)
