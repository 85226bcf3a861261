"""The messages on the engine's topics (ARCHITECTURE.md), as pydantic models.

JSON, UTF-8, key = customer_id. The JSON Schemas in `schemas/` are generated from these models
(`nba schemas write`) and CI checks that they are up to date.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import pandas as pd
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from policies.errors import first_problem
from simulator.events import EVENT_TYPES

__all__ = [
    "ACTIONS_SCHEMA_VERSION",
    "DECISION_REQUESTED",
    "events_from_frame",
    "ACTION_ID_NAMESPACE",
    "DlqRecord",
    "EngagementEvent",
    "NbaAction",
    "Outcome",
    "Trigger",
    "action_id_for",
]

# The event types are the simulator's: one list of what product services send.
# Which types a worker accepts is configuration (a project's `events.types`, else the simulated
# world's EVENT_TYPES), checked by the intake (stream_app.pipeline): the schema fixes the form.
EventType = Annotated[
    str,
    Field(
        pattern=r"^[a-z][a-z0-9_]*$",
        max_length=64,
        description="one of the event types the project declares (the simulated world: "
        + ", ".join(EVENT_TYPES)
        + ")",
    ),
]
# The event the HTTP decision API (stream_app.api) sends for `POST /v1/decisions`: every worker
# accepts it and decides on it like any trigger, and it is not product engagement (the streaming
# event counts and windows leave it out).
DECISION_REQUESTED = "decision_requested"
ACTION_ID_NAMESPACE = uuid.UUID("8f6f2b8e-2f55-4d4b-9a57-4f1c3c1e0a11")
CustomerId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Properties(BaseModel):
    """The properties an event type is known to carry, with their ranges; others pass."""

    model_config = ConfigDict(extra="allow", strict=True)


class _Ticket(_Properties):
    severity: Annotated[int, Field(ge=1, le=5)]


class _Nps(_Properties):
    score: Annotated[int, Field(ge=0, le=10)]


class _Seats(_Properties):
    count: Annotated[int, Field(ge=1)] = 1


class _Billing(_Properties):
    attempt: Annotated[int, Field(ge=1)] = 1


class _Export(_Properties):
    rows: Annotated[int, Field(ge=0)] = 0


# The properties the features read (max ticket severity, NPS, seat changes...): a value out of
# its range would be decided on as if it were true, so such an event goes to the DLQ instead.
PROPERTY_RULES: dict[str, type[_Properties]] = {
    "support_ticket": _Ticket,
    "nps_response": _Nps,
    "seat_added": _Seats,
    "seat_removed": _Seats,
    "billing_failed": _Billing,
    "export_data": _Export,
}


class EngagementEvent(_Message):
    """`engagement-events`: one product event; the schema version travels in a header."""

    event_id: Annotated[str, Field(min_length=1, max_length=128)]
    customer_id: CustomerId
    event_type: EventType
    occurred_at: AwareDatetime
    properties: dict[str, Any] = Field(default_factory=dict)

    @field_validator("properties")
    @classmethod
    def _known_properties_in_range(
        cls, properties: dict[str, Any], info: ValidationInfo
    ) -> dict[str, Any]:
        rules = PROPERTY_RULES.get(str(info.data.get("event_type", "")))
        if rules is not None:
            try:
                rules.model_validate(properties)
            except ValidationError as exc:
                where, message, _ = first_problem(exc, "properties")
                raise ValueError(f"{where}: {message}") from None
        return properties


class Outcome(_Message):
    """`outcomes`: what happened to a customer, joined back to the decision by action_id."""

    customer_id: CustomerId
    outcome_type: Literal["renewed", "churned", "converted", "upgraded", "complained", "opted_out"]
    value: float = 0.0
    occurred_at: AwareDatetime
    action_id: str | None = None


class Trigger(_Message):
    topic: str
    partition: int
    offset: int
    event_id: str


class NbaAction(_Message):
    """`nba-actions`: one decision, with everything needed to audit and evaluate it.

    Schema version 2 (the ``schema-version`` header; version 1 messages have none) adds the
    customer's ``persona`` and ``rfm_segment`` as the feature store holds them (null when it has
    none). A version-1 reader that ignores unknown keys sees the same decision; one that
    validates against the version-1 schema (``additionalProperties: false``) must take
    ``schemas/nba-actions.schema.json`` of version 2 first."""

    action_id: str
    customer_id: CustomerId
    action: str
    channel: Literal["phone", "email", "in_app", "none"]
    expected_value: float
    uplift: float
    p_churn: Annotated[float, Field(ge=0.0, le=1.0)]
    customer_value: float
    cost: Annotated[float, Field(ge=0.0)]
    segment: str
    reasons: list[str]
    explanation: str
    arm: Literal["treatment", "holdout", "explore"]
    propensity: Annotated[float, Field(gt=0.0, le=1.0)]
    model_version: str
    policy_version: str
    budget_period: str
    decided_at: AwareDatetime
    trigger: Trigger
    persona: str | None = None
    rfm_segment: str | None = None


class DlqRecord(_Message):
    """`nba-dlq`: a message the engine could not use, with why, and its original bytes.

    An original longer than the engine accepts is kept only up to that limit
    (``original_truncated``), so that a DLQ record always fits the topic; its full size and
    SHA-256 identify it at the source."""

    original_base64: str
    original_size_bytes: Annotated[int, Field(ge=0)] = 0
    original_sha256: str = ""
    original_truncated: bool = False
    source_topic: str
    source_partition: int
    source_offset: int
    error_code: str
    error_message: str
    failed_at: AwareDatetime


ACTIONS_SCHEMA_VERSION = "2"  # the `schema-version` header of `nba-actions` messages


def events_from_frame(frame: pd.DataFrame, properties: Sequence[str] = ()) -> list[EngagementEvent]:
    """Events from a table (event_id, customer_id, event_type, occurred_at and the named
    property columns; a blank property is left out)."""
    events = []
    for row in frame.to_dict(orient="records"):
        kept = {p: _plain(row[p]) for p in properties if pd.notna(row[p])}
        events.append(
            EngagementEvent(
                event_id=row["event_id"],
                customer_id=row["customer_id"],
                event_type=row["event_type"],
                occurred_at=row["occurred_at"],
                properties=kept,
            )
        )
    return events


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (the properties' checks are strict)."""
    return value.item() if hasattr(value, "item") else value


def action_id_for(topic: str, event_id: str) -> str:
    """Deterministic from the trigger event's identity: a replay of its offset and a re-sent
    copy at another offset (a producer's retry) yield the same id, so the same decision is
    republished and its spend reserved once."""
    return str(uuid.uuid5(ACTION_ID_NAMESPACE, f"{topic}|{event_id}"))
