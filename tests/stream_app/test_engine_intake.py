"""The engine's intake alone: valid events pass in order, everything else becomes a DLQ record
with a reason, produced to the DLQ topic (a recording producer: no broker in a unit test)."""

from __future__ import annotations

import json
from typing import Any

from stream_app.engine.intake import Intake
from stream_app.messages import DlqRecord
from stream_app.pipeline import Limits, RawMessage

HEADERS = {"schema-version": b"1"}


class RecordingProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def produce(self, topic: str, value: bytes, **_: Any) -> None:
        self.sent.append((topic, value))


def _raw(offset: int, value: bytes | None) -> RawMessage:
    return RawMessage("events", 0, offset, b"C1", value, HEADERS, 0)


def _event(event_id: str) -> bytes:
    return json.dumps(
        {
            "event_id": event_id,
            "customer_id": "C1",
            "event_type": "login",
            "occurred_at": "2026-12-01T10:00:00Z",
        }
    ).encode()


def test_valid_events_pass_and_each_bad_record_reaches_the_dlq_with_its_reason() -> None:
    producer = RecordingProducer()
    intake = Intake(producer=producer, dlq_topic="dlq", limits=Limits(1_000))  # type: ignore[arg-type]  # a recording stand-in
    raws = [
        _raw(0, _event("e1")),
        _raw(1, b"{not json"),
        _raw(2, b"x" * 2_000),
        _raw(3, _event("e2")),
    ]

    valid, rejected = intake.accept(raws)

    assert [event.event_id for _, event in valid] == ["e1", "e2"]
    assert [raw.offset for raw, _ in valid] == [0, 3]
    assert [topic for topic, _ in producer.sent] == ["dlq", "dlq"]
    records = [DlqRecord.model_validate_json(value) for _, value in producer.sent]
    assert [r.source_offset for r in records] == [1, 2]
    assert records == rejected
    assert all(r.error_code and r.error_message for r in records)
    assert records[0].error_code != records[1].error_code
