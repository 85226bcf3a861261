"""Reading a topic from where a consumer group stands (or its start) to its end as it is now:
the shell's reports and the DLQ commands, and a worker rebuilding its ledger from nba-actions."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, TopicPartition

__all__ = ["read_from_start", "read_to_end"]


def read_to_end(consumer: Consumer, timeout_s: float = 60.0) -> list[bytes]:
    """Every value up to the end of the subscribed topic (after joining the group), resuming at
    the group's committed offsets or the start."""
    deadline = time.monotonic() + timeout_s
    while not consumer.assignment() and time.monotonic() < deadline:
        consumer.poll(0.2)  # joins the group; a message seen here would be lost, so rewind below
    assigned = consumer.assignment()
    if not assigned:
        return []
    committed = consumer.committed(assigned, timeout=10)
    ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in assigned}
    for tp in committed:
        tp.offset = (
            tp.offset if tp.offset >= 0 else consumer.get_watermark_offsets(tp, timeout=10)[0]
        )
        consumer.seek(tp)
    found: list[bytes] = []
    left = {tp.partition: ends[tp.partition] for tp in committed if tp.offset < ends[tp.partition]}
    topic = committed[0].topic
    while left and time.monotonic() < deadline:
        for msg in consumer.consume(1000, 0.5):
            value = msg.value()
            if msg.error() is None and isinstance(value, bytes):
                found.append(value)
        _drop_read(consumer, topic, left)
    return found


def _drop_read(consumer: Consumer, topic: str, left: dict[int, int]) -> None:
    """Forget the partitions whose position passed their end as it was: the last offset of a
    transactional topic is a commit marker, which no consumer ever receives."""
    for tp in consumer.position([TopicPartition(topic, p) for p in left]):
        if tp.offset >= left[tp.partition]:
            del left[tp.partition]


def read_from_start(consumer: Consumer, topic: str, timeout_s: float = 120.0) -> list[bytes]:
    """Every value of ``topic`` from its first offset to its end as it is now, on assigned
    partitions: no consumer group to join, no committed offsets to ask a coordinator for (a
    worker starting right after its topics were created met both not ready yet)."""
    listed = consumer.list_topics(topic, timeout=10).topics.get(topic)
    ends: dict[int, int] = {}
    start = []
    for partition in listed.partitions if listed is not None else {}:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        if high > low:
            ends[partition] = high
            start.append(TopicPartition(topic, partition, low))
    if not start:
        return []
    consumer.assign(start)
    found: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while ends and time.monotonic() < deadline:
        messages = consumer.consume(1000, 0.5)
        for msg in messages:
            value = msg.value()
            if msg.error() is None and isinstance(value, bytes):
                found.append(value)
        _drop_read(consumer, topic, ends)
    return found
