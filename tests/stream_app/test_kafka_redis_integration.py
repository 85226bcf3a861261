"""Round trips through the real Kafka broker and the real Redis server."""

from __future__ import annotations

from collections import Counter

import pytest
import redis
from confluent_kafka import Consumer, TopicPartition

from stream_app import kafka_clients
from stream_app.settings import load_settings
from tests.conftest import TopicFactory, drain

pytestmark = pytest.mark.integration


def _drain(consumer: Consumer, expected: int) -> list[tuple[int, int, bytes]]:
    """(partition, offset, key) of each message."""
    return [(m.partition(), m.offset(), m.key()) for m in drain(consumer, expected)]


def test_produce_consume_commit_and_resume_across_consumer_restart(
    kafka_bootstrap: str, make_topic: TopicFactory
) -> None:
    settings = load_settings(kafka_bootstrap=kafka_bootstrap)
    topic = make_topic("roundtrip", partitions=4)
    producer = kafka_clients.producer(settings)
    for i in range(400):
        producer.produce(topic, key=f"cust-{i % 50}".encode(), value=f"{i}".encode())
    assert producer.flush(30) == 0

    group = f"g-{topic}"
    first = kafka_clients.consumer(settings, group)
    first.subscribe([topic])
    head = _drain(first, 150)
    assert len(head) == 150
    # Commit exactly what we saw: next offset per partition.
    last_seen: dict[int, int] = {}
    for partition, offset, _ in head:
        last_seen[partition] = max(offset, last_seen.get(partition, -1))
    first.commit(
        offsets=[TopicPartition(topic, p, o + 1) for p, o in last_seen.items()], asynchronous=False
    )
    first.close()

    second = kafka_clients.consumer(settings, group)
    second.subscribe([topic])
    tail = _drain(second, 250)
    second.close()

    assert len(tail) == 250
    seen = {(p, o) for p, o, _ in head} | {(p, o) for p, o, _ in tail}
    assert len(seen) == 400, "every message exactly once across the restart"
    assert len({p for p, _, _ in head + tail}) == 4, "keys spread over all partitions"


def test_same_key_always_lands_on_the_same_partition(
    kafka_bootstrap: str, make_topic: TopicFactory
) -> None:
    settings = load_settings(kafka_bootstrap=kafka_bootstrap)
    topic = make_topic("keys", partitions=6)
    producer = kafka_clients.producer(settings)
    for i in range(120):
        producer.produce(topic, key=f"cust-{i % 10}".encode(), value=b"x")
    assert producer.flush(30) == 0
    consumer = kafka_clients.consumer(settings, f"g-{topic}")
    consumer.subscribe([topic])
    got = _drain(consumer, 120)
    consumer.close()
    partitions_per_key: dict[bytes, set[int]] = {}
    for partition, _, key in got:
        partitions_per_key.setdefault(key, set()).add(partition)
    assert len(got) == 120
    assert all(len(parts) == 1 for parts in partitions_per_key.values())
    assert Counter(key for _, _, key in got) == {f"cust-{i}".encode(): 12 for i in range(10)}


def test_redis_round_trip_with_pipeline_and_lua(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        key = "nba-test:roundtrip"
        client.delete(key)
        with client.pipeline() as pipe:
            pipe.hset(key, mapping={"a": "1", "b": "2"})
            pipe.hincrby(key, "a", 41)
            pipe.execute()
        assert client.hgetall(key) == {b"a": b"42", b"b": b"2"}
        script = client.register_script("return redis.call('HINCRBY', KEYS[1], 'b', ARGV[1])")
        assert script(keys=[key], args=[3]) == 5
        client.delete(key)
    finally:
        client.close()
