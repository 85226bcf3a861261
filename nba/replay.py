"""Replay simulated engagement events into Kafka at a target rate, as product services would.

Messages are keyed by customer_id (murmur2 partitioner, as Faust expects) and carry the schema
version in a header. Pacing sleeps until each message's scheduled send time, so the achieved
rate stays at the target whenever the producer can keep up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from confluent_kafka import Producer

from policies.errors import ConfigError, InfraError
from simulator.events import EventBatch
from stream_app.messages import EngagementEvent

__all__ = ["EVENT_SCHEMA_VERSION", "ReplayStats", "replay_events", "send_events"]

EVENT_SCHEMA_VERSION = b"1"
_HEADERS: list[tuple[str, str | bytes | None]] = [("schema-version", EVENT_SCHEMA_VERSION)]


@dataclass(frozen=True)
class ReplayStats:
    sent: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


def replay_events(
    events: EventBatch,
    producer: Producer,
    topic: str,
    rate: float,
    limit: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ReplayStats:
    """Send up to ``limit`` events at ``rate`` events/s; returns what was sent and how fast."""
    if not rate > 0:
        raise ConfigError(f"--rate must be > 0 events/s, got {rate}")
    total = len(events) if limit is None else min(limit, len(events))
    step = max(1, int(rate / 200))  # about 200 pacing points per second
    started = time.perf_counter()
    sent = 0
    for customer, payload in events.json_lines(0, total):
        _produce(producer, topic, customer, payload)
        sent += 1
        if sent % step == 0:
            producer.poll(0)
            delay = started + sent / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if on_progress is not None:
                on_progress(step)
    if producer.flush(60) != 0:
        raise InfraError(f"kafka: {len(producer)} events were not delivered to {topic} within 60s")
    if on_progress is not None and sent % step:
        on_progress(sent % step)
    return ReplayStats(sent=sent, seconds=time.perf_counter() - started)


def send_events(producer: Producer, topic: str, events: Iterable[EngagementEvent]) -> int:
    """Send ``events`` as they come (no pacing), keyed and versioned as a product service
    would; returns how many, once all were delivered."""
    sent = 0
    for event in events:
        _produce(producer, topic, event.customer_id, event.model_dump_json().encode())
        sent += 1
    if producer.flush(60) != 0:
        raise InfraError(f"kafka: {len(producer)} events were not delivered to {topic} within 60s")
    return sent


def _produce(producer: Producer, topic: str, key: str, payload: bytes) -> None:
    while True:
        try:
            producer.produce(topic, key=key.encode(), value=payload, headers=_HEADERS)
            return
        except BufferError:
            producer.poll(0.05)  # the local queue is full: let deliveries drain it
