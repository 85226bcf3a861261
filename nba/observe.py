"""Watching a running worker from outside, as the demo and the benchmarks do: how many events
it has taken in (its own /metrics), and how long each decision took from its trigger event to
its publication (both Kafka timestamps, read back from the topics)."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Callable

from confluent_kafka import Consumer, Message

from stream_app import kafka_clients
from stream_app.settings import Settings

__all__ = [
    "action_latencies",
    "events_processed",
    "events_processed_or_none",
    "scrape",
    "wait_for_events",
]


def scrape(settings: Settings, *prefixes: str) -> dict[str, float]:
    """The worker's /metrics samples whose line starts with one of ``prefixes``."""
    url = f"http://127.0.0.1:{settings.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310  # loopback worker
        text = response.read().decode()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(prefixes)
    }


def events_processed(settings: Settings) -> float:
    """Valid plus invalid events the worker on NBA_METRICS_PORT has consumed."""
    return sum(scrape(settings, "nba_events_total{", "nba_events_invalid_total{").values())


def events_processed_or_none(settings: Settings) -> float | None:
    """As events_processed, or None while the worker does not serve /metrics (yet, or any more)."""
    try:
        return events_processed(settings)
    except OSError:
        return None


def wait_for_events(
    settings: Settings, count: float, timeout_s: float, alive: Callable[[], bool] = lambda: True
) -> float:
    """Wait until the worker has consumed ``count`` events; returns what it has consumed."""
    deadline = time.monotonic() + timeout_s
    seen = 0.0
    while time.monotonic() < deadline and alive():
        answered = events_processed_or_none(settings)
        if answered is not None:
            seen = answered
            if seen >= count:
                return seen
        time.sleep(0.2)
    raise RuntimeError(f"the worker consumed {seen:,.0f} of {count:,.0f} events in time")


def _drain(consumer: Consumer, handle: Callable[[Message], None], idle_s: float = 3.0) -> None:
    last = time.monotonic()
    try:
        while time.monotonic() - last < idle_s:
            for msg in consumer.consume(5000, 0.5):
                if msg.error() is None:
                    handle(msg)
                    last = time.monotonic()
    finally:
        consumer.close()


def action_latencies(settings: Settings, since_ms: float = 0.0) -> list[float]:
    """Milliseconds from each trigger event (sent after ``since_ms``) to its published action."""
    sent: dict[tuple[int, int], int] = {}
    events = kafka_clients.consumer(settings, f"nba-observe-{uuid.uuid4().hex[:8]}")
    events.subscribe([settings.topic_events])
    _drain(
        events, lambda m: sent.__setitem__((m.partition() or 0, m.offset() or 0), m.timestamp()[1])
    )
    latencies: list[float] = []

    def measure(msg: Message) -> None:
        trigger = json.loads(msg.value() or b"{}").get("trigger", {})
        start = sent.get((trigger.get("partition", -1), trigger.get("offset", -1)))
        if start is not None and start >= since_ms:
            latencies.append(float(msg.timestamp()[1] - start))

    actions = kafka_clients.consumer(settings, f"nba-observe-{uuid.uuid4().hex[:8]}")
    actions.subscribe([settings.topic_actions])
    _drain(actions, measure)
    return latencies
