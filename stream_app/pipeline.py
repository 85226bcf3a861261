"""The steps of the decision path that need no server: parse and validate raw events (bad ones
become DLQ records with a reason), pick the triggers worth a decision, and turn decisions into
`nba-actions` messages. The worker wires these to Kafka, the feature store and the ledger.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import ValidationError

from policies.arms import Arm
from policies.catalog import Catalog
from policies.decide import Decisions
from policies.errors import first_problem
from policies.segments import SEGMENTS
from simulator.events import EVENT_TYPES
from stream_app.messages import (
    DECISION_REQUESTED,
    DlqRecord,
    EngagementEvent,
    NbaAction,
    Trigger,
    action_id_for,
)

__all__ = [
    "DLQ_ORIGINAL_MAX_BYTES",
    "MAX_JSON_DEPTH",
    "SUPPORTED_SCHEMA_VERSIONS",
    "Limits",
    "RawMessage",
    "build_actions",
    "parse_events",
    "select_triggers",
    "superseded_requests",
]

SUPPORTED_SCHEMA_VERSIONS = frozenset({b"1"})


@dataclass(frozen=True)
class RawMessage:
    """A consumed Kafka record, detached from the client library."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Mapping[str, bytes] = field(default_factory=dict)
    timestamp_ms: int = 0

    @property
    def trigger(self) -> tuple[str, int, int]:
        return self.topic, self.partition, self.offset


# A DLQ record keeps at most this much of its original, so it always fits the DLQ topic
# (Kafka's default limit is 1 MB; base64 grows the bytes by a third).
DLQ_ORIGINAL_MAX_BYTES = 256_000
# Nesting deeper than this is no event a product service sends; checked after parsing, and
# the parser's own recursion limit is caught for anything deeper still.
MAX_JSON_DEPTH = 32
DEFAULT_MAX_FUTURE_S = 300.0


def _dlq(raw: RawMessage, code: str, message: str, keep_bytes: int) -> DlqRecord:
    original = raw.value or b""
    kept = original[: min(keep_bytes, DLQ_ORIGINAL_MAX_BYTES)]
    return DlqRecord(
        original_base64=base64.b64encode(kept).decode(),
        original_size_bytes=len(original),
        original_sha256=hashlib.sha256(original).hexdigest(),
        original_truncated=len(kept) < len(original),
        source_topic=raw.topic,
        source_partition=raw.partition,
        source_offset=raw.offset,
        error_code=code,
        error_message=message[:500],
        failed_at=datetime.now(UTC),
    )


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _depth(value: object) -> int:
    """Nesting depth of parsed JSON, without recursion (the input may be hostile)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            stack.extend((child, level + 1) for child in item if isinstance(child, dict | list))
    return deepest


@dataclass(frozen=True)
class Limits:
    """What the engine accepts of one record: its size (checked before parsing), and how far in
    the future its event time may lie (clock skew between producers and the engine)."""

    max_bytes: int
    max_future_s: float = DEFAULT_MAX_FUTURE_S
    event_types: frozenset[str] = frozenset(EVENT_TYPES)  # a project's declared types


def _check_record(raw: RawMessage, limits: Limits) -> tuple[str, str] | None:
    version = raw.headers.get("schema-version")
    if version is None:
        return "missing_header", "no schema-version header"
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        return "unsupported_schema_version", f"schema-version {version!r} is not supported"
    if raw.value is None or len(raw.value) > limits.max_bytes:
        size = 0 if raw.value is None else len(raw.value)
        return (
            "too_large" if size else "empty",
            f"payload of {size} bytes (limit {limits.max_bytes})",
        )
    return None


def _parse_one(raw: RawMessage, limits: Limits, now: datetime) -> EngagementEvent | DlqRecord:
    def reject(code: str, message: str) -> DlqRecord:
        return _dlq(raw, code, message, limits.max_bytes)

    problem = _check_record(raw, limits)
    if problem is not None:
        return reject(*problem)
    try:
        payload = json.loads(raw.value or b"", parse_constant=_no_constants)
    except RecursionError:
        return reject("too_deep", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        return reject("invalid_json", str(exc))
    if _depth(payload) > MAX_JSON_DEPTH:
        return reject("too_deep", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        event = EngagementEvent.model_validate(payload)
    except ValidationError as exc:
        where, message, _ = first_problem(exc, "event")
        return reject("invalid_schema", f"{where}: {message}")
    if event.event_type not in limits.event_types:
        return reject(
            "unknown_event_type",
            f"event_type {event.event_type!r} is not among the declared types "
            f"({', '.join(sorted(limits.event_types))})",
        )
    if raw.key is not None and raw.key.decode(errors="replace") != event.customer_id:
        return reject("key_mismatch", f"key {raw.key!r} is not customer_id {event.customer_id!r}")
    ahead_s = (event.occurred_at - now).total_seconds()
    if ahead_s > limits.max_future_s:
        return reject(
            "from_the_future",
            f"occurred_at {event.occurred_at.isoformat()} is {ahead_s:,.0f} s ahead of the "
            f"engine's clock (allowed {limits.max_future_s:,.0f} s)",
        )
    return event


def parse_events(
    messages: Iterable[RawMessage], limits: Limits, now: datetime | None = None
) -> tuple[list[tuple[RawMessage, EngagementEvent]], list[DlqRecord]]:
    """Valid events (with their record) and DLQ records for the rest; never raises on bad input:
    whatever goes wrong with one record (even an error no check foresaw) is that record's
    DLQ reason, so no record can stop a partition."""
    now = now or datetime.now(UTC)
    valid: list[tuple[RawMessage, EngagementEvent]] = []
    rejected: list[DlqRecord] = []
    for raw in messages:
        try:
            parsed = _parse_one(raw, limits, now)
        except Exception as exc:  # the last line of defence: one record, never the partition
            parsed = _dlq(raw, "unreadable", f"{type(exc).__name__}: {exc}", limits.max_bytes)
        if isinstance(parsed, DlqRecord):
            rejected.append(parsed)
        else:
            valid.append((raw, parsed))
    return valid, rejected


def select_triggers(
    events: Sequence[tuple[RawMessage, EngagementEvent]],
    last_trigger: Mapping[str, tuple[float, str]],
    trigger_types: frozenset[str],
    min_interval_s: float,
) -> list[tuple[RawMessage, EngagementEvent]]:
    """At most one trigger per customer and batch: the first meaningful event that is either
    past the customer's minimum interval since its last trigger, or that very trigger again
    (a replay, which must be answered with the same decision). ``last_trigger`` maps a
    customer to (event time in epoch seconds, event_id) of its last trigger."""
    chosen: dict[str, tuple[RawMessage, EngagementEvent]] = {}
    for raw, event in events:
        if event.event_type not in trigger_types or event.customer_id in chosen:
            continue
        last = last_trigger.get(event.customer_id)
        if last is not None and last[1] != event.event_id:
            if event.occurred_at.timestamp() - last[0] < min_interval_s:
                continue
        chosen[event.customer_id] = (raw, event)
    return list(chosen.values())


def superseded_requests(
    events: Sequence[tuple[RawMessage, EngagementEvent]],
    chosen: Sequence[tuple[RawMessage, EngagementEvent]],
    last_trigger: Mapping[str, tuple[float, str]],
) -> dict[str, str]:
    """HTTP decision requests (``decision_requested``) that `select_triggers` left out, by
    action_id, each with the action_id of the decision that answers its customer instead: this
    batch's trigger of the same customer, else the customer's last one (too recent for another).
    The API answers such a request with that decision rather than wait for one never made."""
    winners = {event.customer_id: action_id_for(raw.topic, event.event_id) for raw, event in chosen}
    decided = {event.event_id for _, event in chosen}
    superseded = {}
    for raw, event in events:
        if event.event_type != DECISION_REQUESTED or event.event_id in decided:
            continue
        winner = winners.get(event.customer_id)
        last = last_trigger.get(event.customer_id)
        if winner is None and last is not None:
            winner = action_id_for(raw.topic, last[1])
        if winner is not None:
            superseded[action_id_for(raw.topic, event.event_id)] = winner
    return superseded


def build_actions(
    decisions: Decisions,
    triggers: Sequence[tuple[RawMessage, EngagementEvent]],
    catalog: Catalog,
    model_version: str,
    budget_period: str,
    decided_at: datetime,
) -> list[NbaAction]:
    """One `nba-actions` message per decision, with its deterministic action_id."""
    channels = {a.name: a.channel for a in catalog.actions}
    actions = []
    for i, (raw, event) in enumerate(triggers):
        trigger = Trigger(
            topic=raw.topic, partition=raw.partition, offset=raw.offset, event_id=event.event_id
        )
        name = decisions.action_name(i)
        actions.append(
            NbaAction(
                action_id=action_id_for(raw.topic, event.event_id),
                customer_id=event.customer_id,
                action=name,
                channel=channels.get(name, "none"),
                expected_value=round(float(decisions.expected_value[i]), 4),
                uplift=round(float(decisions.uplift[i]), 6),
                p_churn=round(float(decisions.p_churn[i]), 6),
                customer_value=round(float(decisions.customer_value[i]), 2),
                cost=round(float(decisions.cost[i]), 4),
                segment=SEGMENTS[decisions.segment[i]],
                reasons=decisions.reasons(i),
                explanation=decisions.explanation(i),
                arm=Arm(decisions.arm[i]).label,
                propensity=float(decisions.propensity[i]),
                model_version=model_version,
                policy_version=decisions.policy_version,
                budget_period=budget_period,
                decided_at=decided_at,
                trigger=trigger,
            )
        )
    return actions
