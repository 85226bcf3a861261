"""The simulated world as a project file: the same contract and path as a team's own data.

``nba simulate world`` writes ``nba.yaml`` beside its parquet files; ``nba data validate
--project <out>/nba.yaml`` reads the world like any other data set.
"""

from __future__ import annotations

from typing import Any

from policies.catalog import default_catalog
from policies.segments import SegmentThresholds
from simulator.events import EVENT_TYPES
from simulator.world import AS_OF

__all__ = ["EVENT_FEATURES", "SEGMENTS", "TRIGGERS", "world_project"]

TRIGGERS = (
    "login",
    "support_ticket",
    "billing_failed",
    "nps_response",
    "seat_removed",
    "export_data",
)
_CATEGORICAL = ("plan", "industry", "region", "acquisition_channel")
_NUMERIC = (
    "seats",
    "tenure_months",
    "logins_30d",
    "features_used_30d",
    "support_tickets_90d",
    "max_ticket_severity_90d",
    "billing_failures_90d",
    "nps_last",
    "pricing_page_views_30d",
    "seats_added_90d",
    "seats_removed_90d",
    "days_since_last_login",
    "exports_30d",
    "admin_changes_30d",
    "days_to_renewal",
)


# The stream's windows, declared once (features/event_features.py computes them in batch).
EVENT_FEATURES = [
    {"name": "logins_24h", "event_type": "login", "aggregate": "count", "window": "24h"},
    {"name": "tickets_7d", "event_type": "support_ticket", "aggregate": "count", "window": "7d"},
    {
        "name": "ticket_severity_7d",
        "event_type": "support_ticket",
        "aggregate": "sum",
        "window": "7d",
        "property": "severity",
    },
    {
        "name": "distinct_features_7d",
        "event_type": "feature_used",
        "aggregate": "distinct",
        "window": "7d",
        "property": "feature",
    },
    {"name": "hours_since_login", "event_type": "login", "aggregate": "recency", "window": "30d"},
]


# The simulated world's segments, not the brief's defaults: its accounts are B2B contracts of a
# few $1k-$100k with 12-28% yearly churn, so at the brief's 60% risk and $50k value almost no
# account would ever be a Critical Save; these thresholds split its base into the five segments.
SEGMENTS = SegmentThresholds(high_risk=0.30, low_risk=0.30, high_value=10_000.0)


def world_project(with_events: bool) -> dict[str, Any]:
    """The project file of a folder written by ``write_world`` (as a YAML-ready mapping)."""
    sources: dict[str, Any] = {
        "customers": {"path": "customers.parquet"},
        "transactions": {"path": "transactions.parquet"},
        "experiments": {
            "path": "experiment.parquet",
            "columns": {"action": "treatment"},
            "constants": {"assigned_at": AS_OF.isoformat()},
        },
    }
    project: dict[str, Any] = {
        "name": "simulated_world",
        "sources": sources,
        "features": [{"name": n, "kind": "categorical"} for n in _CATEGORICAL]
        + [{"name": n, "kind": "numeric"} for n in _NUMERIC],
        "outcome": {
            "name": "retained",
            "kind": "binary",
            "window": "90d",
            "also": {"expansion_revenue": "continuous"},
        },
        "value": {"source": "column", "column": "contract_value"},
        "consent": {c: f"consent_{c}" for c in ("email", "phone", "in_app")},
        "catalog": default_catalog().model_dump(mode="json", exclude_defaults=True),
        "segments": SEGMENTS.model_dump(),
    }
    if with_events:
        sources["events"] = {
            "path": "events.jsonl",
            "columns": {"feature": "properties.feature", "severity": "properties.severity"},
        }
        project["events"] = {
            "types": list(EVENT_TYPES),
            "triggers": list(TRIGGERS),
            "properties": {"feature": "categorical", "severity": "numeric"},
        }
        project["event_features"] = EVENT_FEATURES
    return project
