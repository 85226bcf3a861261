"""Replaying simulated events into the real broker."""

from __future__ import annotations

import json

import pytest

from nba.replay import replay_events
from simulator.config import WorldConfig
from simulator.events import generate_events
from simulator.world import build_world
from stream_app import kafka_clients
from stream_app.settings import load_settings
from tests.conftest import TopicFactory, drain

pytestmark = pytest.mark.integration


def test_replay_sends_every_event_keyed_with_a_schema_header(
    kafka_bootstrap: str, make_topic: TopicFactory
) -> None:
    settings = load_settings(kafka_bootstrap=kafka_bootstrap)
    topic = make_topic("events", partitions=4)
    events = generate_events(build_world(WorldConfig(n_customers=500, seed=1)), days=0.5)
    stats = replay_events(events, kafka_clients.producer(settings), topic, rate=4_000, limit=2_000)
    assert stats.sent == 2_000
    assert stats.rate <= 4_000 * 1.1, "pacing holds the target rate"

    consumer = kafka_clients.consumer(settings, f"g-{topic}")
    consumer.subscribe([topic])
    received = drain(consumer, 2_000)
    consumer.close()
    assert len(received) == 2_000
    for msg in received[:50]:
        body = json.loads(msg.value())
        assert msg.key().decode() == body["customer_id"]
        assert dict(msg.headers())["schema-version"] == b"1"
    sent_ids = {json.loads(p)["event_id"] for _, p in events.json_lines(0, 2_000)}
    assert {json.loads(m.value())["event_id"] for m in received} == sent_ids
