"""`nba dlq inspect | replay`: what landed in the dead-letter queue, and sending it back.

``inspect`` reads the whole DLQ without committing anything and counts records by reason.
``replay`` re-sends the original bytes of the records with one reason (after the producer bug
is fixed, or with a header the producer forgot) to the events topic, once: its consumer group
commits what it replayed, so a second run sends only newer records.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections import Counter
from dataclasses import dataclass, field

from confluent_kafka import Consumer

from nba.replay import EVENT_SCHEMA_VERSION
from nba.topic_reader import read_to_end, topic_consumer
from stream_app import kafka_clients
from stream_app.messages import DlqRecord
from stream_app.settings import Settings

__all__ = ["DlqReplay", "DlqSummary", "inspect_dlq", "replay_dlq"]


@dataclass
class DlqSummary:
    total: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    samples: list[DlqRecord] = field(default_factory=list)


def _records(consumer: Consumer) -> list[DlqRecord]:
    return [DlqRecord.model_validate_json(value) for value in read_to_end(consumer, 30.0)]


def inspect_dlq(settings: Settings, samples: int = 5) -> DlqSummary:
    group = f"nba-dlq-inspect-{uuid.uuid4().hex[:8]}"
    consumer = topic_consumer(settings, settings.topic_dlq, group)
    try:
        records = _records(consumer)
    finally:
        consumer.close()
    summary = DlqSummary(total=len(records))
    for record in records:
        summary.by_reason[record.error_code] += 1
        if len(summary.samples) < samples:
            summary.samples.append(record)
    return summary


@dataclass(frozen=True)
class DlqReplay:
    sent: int
    truncated: int  # records of the reason whose original was cut to fit the DLQ: not re-sent


def replay_dlq(settings: Settings, reason: str, group: str = "nba-dlq-replay") -> DlqReplay:
    """Re-send the originals of records with this reason to the events topic, once (the group
    commits what it read); a truncated original is never re-sent, only counted."""
    consumer = topic_consumer(settings, settings.topic_dlq, group)
    producer = kafka_clients.producer(settings)
    sent = truncated = 0
    try:
        records = _records(consumer)
        for record in records:
            if record.error_code != reason:
                continue
            if record.original_truncated:
                truncated += 1
                continue
            original = base64.b64decode(record.original_base64)
            producer.produce(
                settings.topic_events,
                key=_customer_key(original),
                value=original,
                headers=[("schema-version", EVENT_SCHEMA_VERSION)],
            )
            sent += 1
        producer.flush(30)
        if records:  # nothing read, nothing to commit
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return DlqReplay(sent, truncated)


def _customer_key(original: bytes) -> bytes | None:
    try:
        customer = json.loads(original).get("customer_id")
    except (ValueError, AttributeError):
        return None
    return customer.encode() if isinstance(customer, str) else None
