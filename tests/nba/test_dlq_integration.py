"""`nba dlq inspect | replay` against the real broker."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime

import pytest

from nba.commands.dlq import DlqReplay, inspect_dlq, replay_dlq
from stream_app import kafka_clients
from stream_app.messages import DlqRecord
from stream_app.settings import load_settings
from tests.conftest import TopicFactory, drain

pytestmark = pytest.mark.integration


def _record(original: bytes, code: str, offset: int, truncated: bool = False) -> bytes:
    record = DlqRecord(
        original_base64=base64.b64encode(original).decode(),
        original_size_bytes=len(original) * (2 if truncated else 1),
        original_truncated=truncated,
        source_topic="engagement-events",
        source_partition=0,
        source_offset=offset,
        error_code=code,
        error_message=code,
        failed_at=datetime.now(UTC),
    )
    return record.model_dump_json().encode()


def test_inspect_counts_by_reason_and_replay_sends_each_original_once(
    kafka_bootstrap: str, make_topic: TopicFactory
) -> None:
    settings = load_settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_dlq=make_topic("dlq", 1),
        topic_events=make_topic("events", 2),
    )
    good = json.dumps(
        {
            "event_id": "e1",
            "customer_id": "C1",
            "event_type": "login",
            "occurred_at": "2026-01-01T00:00:00Z",
        }
    ).encode()
    producer = kafka_clients.producer(settings)
    for k, (original, code) in enumerate(
        [(good, "missing_header"), (good, "missing_header"), (b"{bad", "invalid_json")]
    ):
        producer.produce(settings.topic_dlq, value=_record(original, code, k))
    producer.produce(settings.topic_dlq, value=_record(good[:20], "missing_header", 3, True))
    assert producer.flush(30) == 0

    summary = inspect_dlq(settings)
    assert summary.total == 4 and summary.by_reason == {"missing_header": 3, "invalid_json": 1}
    assert inspect_dlq(settings).total == 4, "inspect consumes nothing for good"

    group = f"replay-{uuid.uuid4().hex[:8]}"
    assert replay_dlq(settings, "missing_header", group) == DlqReplay(sent=2, truncated=1)
    again = replay_dlq(settings, "missing_header", group)
    assert again == DlqReplay(sent=0, truncated=0), "each record is replayed once"
    reader = kafka_clients.consumer(settings, f"r-{uuid.uuid4().hex[:8]}")
    reader.subscribe([settings.topic_events])
    replayed = drain(reader, 2)
    reader.close()
    assert [m.value() for m in replayed] == [good, good]
    assert all(dict(m.headers())["schema-version"] == b"1" and m.key() == b"C1" for m in replayed)
