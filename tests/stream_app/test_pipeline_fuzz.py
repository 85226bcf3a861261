"""Any bytes, any headers: parsing never raises, and every record is either a valid event or a
DLQ record that fits the DLQ topic (hypothesis; no servers)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.messages import EngagementEvent
from stream_app.pipeline import Limits, RawMessage, parse_events, select_triggers

NOW = datetime(2026, 12, 1, tzinfo=UTC)
VALID = {
    "event_id": "e1",
    "customer_id": "C1",
    "event_type": "nps_response",
    "occurred_at": "2026-11-30T10:00:00Z",
    "properties": {"score": 7},
}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)


@st.composite
def payloads(draw: st.DrawFn) -> bytes | None:
    kind = draw(st.sampled_from(["bytes", "json", "mutated", "valid", "none"]))
    if kind == "none":
        return None
    if kind == "valid":
        return json.dumps(VALID).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    event: dict[str, Any] = dict(VALID)
    event[draw(st.sampled_from(sorted(VALID)))] = draw(json_values)
    return json.dumps(event).encode()


records = st.builds(
    RawMessage,
    topic=st.just("events"),
    partition=st.integers(0, 3),
    offset=st.integers(0, 10**9),
    key=st.none() | st.just(b"C1") | st.binary(max_size=10),
    value=payloads(),
    headers=st.sampled_from([{}, {"schema-version": b"1"}, {"schema-version": b"2"}]),
    timestamp_ms=st.integers(0, 2**40),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(records, max_size=20))
def test_parsing_any_record_never_raises_and_accounts_for_each(raws: list[RawMessage]) -> None:
    valid, rejected = parse_events(raws, Limits(1_000), NOW)
    assert len(valid) + len(rejected) == len(raws)
    for _, event in valid:
        assert EngagementEvent.model_validate_json(event.model_dump_json()) == event
    for record in rejected:
        assert record.error_code and record.error_message
        assert len(record.model_dump_json()) < 900_000
    select_triggers(valid, {}, frozenset({"login", "nps_response"}), 86_400.0)
