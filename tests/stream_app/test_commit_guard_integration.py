"""The commit guard's broker lookup against the real broker: a transaction's commit marker
takes an offset that no consumer ever receives (a real gap), a record is found where there is
one."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

from stream_app import kafka_clients
from stream_app.commit_guard import LogProbe
from stream_app.settings import load_settings
from tests.conftest import TopicFactory

pytestmark = pytest.mark.integration


def _transaction(producer: Producer, topic: str, values: list[bytes]) -> None:
    producer.begin_transaction()
    for value in values:
        producer.produce(topic, value=value, partition=0)
    producer.commit_transaction(30)


def test_the_probe_tells_records_from_transaction_markers(
    kafka_bootstrap: str, make_topic: TopicFactory
) -> None:
    topic = make_topic("probe", partitions=1)
    settings = load_settings(kafka_bootstrap=kafka_bootstrap)
    producer = kafka_clients.producer(settings, **{"transactional.id": topic})
    producer.init_transactions(30)
    _transaction(producer, topic, [b"a", b"b"])  # offsets 0, 1; its marker: 2
    _transaction(producer, topic, [b"c"])  # offset 3; its marker: 4
    probe = LogProbe(kafka_clients.consumer(settings, f"{topic}-probe"))
    try:
        assert probe(topic, 0, [1, 2, 3]) == {1, 3}
        assert probe(topic, 0, [2]) == set()  # the marker: a gap Faust may fill in
        assert probe(topic, 0, [0]) == {0}
        assert probe(topic, 0, [4]) is None  # nothing at or after it yet: cannot tell
        assert probe.first_offset(topic, 0) == 0
    finally:
        probe.close()


def test_a_lookup_counts_only_its_own_partitions_records(
    kafka_bootstrap: str, make_topic: TopicFactory
) -> None:
    """The probe's consumer moves from partition to partition: records fetched for the previous
    lookup (librdkafka prefetches far past the one asked for) never answer the next one."""
    topic = make_topic("probe", partitions=2)
    settings = load_settings(kafka_bootstrap=kafka_bootstrap)
    producer = kafka_clients.producer(settings)
    for _ in range(2_000):
        producer.produce(topic, value=b"x" * 100, partition=0)
    producer.produce(topic, value=b"only", partition=1)
    assert producer.flush(30) == 0
    probe = LogProbe(kafka_clients.consumer(settings, f"{topic}-probe"))
    try:
        for _ in range(2):
            assert probe(topic, 0, [0]) == {0}  # its fetch brings more of partition 0
            assert probe(topic, 1, [0, 1]) is None  # 0 is there, 1 not yet: cannot tell
            assert probe(topic, 0, [5, 7]) == {5, 7}
    finally:
        probe.close()
