"""Read a topic from where a consumer group stands (or its start) up to its end as it is now.

Used by the operator commands that look at a whole topic (`nba dlq`, `nba experiment report`,
`nba ope`, `nba retrain`, `nba report`): they read without committing, except `dlq replay`,
which commits what it re-sent. An unreachable broker or a missing topic is one clear error
within a few seconds, not a stream of librdkafka's connection lines and an empty answer.
"""

from __future__ import annotations

import logging
import uuid

from confluent_kafka import Consumer, KafkaException

from policies.errors import ConfigError, InfraError
from stream_app import kafka_clients
from stream_app.settings import Settings
from stream_app.topic_scan import read_to_end

__all__ = ["read_to_end", "read_topic", "topic_consumer"]

BROKER_TIMEOUT_S = 5.0
# A reader's failures are reported as one InfraError line; librdkafka's retries are noise here.
_QUIET = logging.getLogger("nba.reader.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


def topic_consumer(settings: Settings, topic: str, group_id: str) -> Consumer:
    """A consumer of ``topic`` in ``group_id``, once the broker answered and the topic exists.
    It reads committed records only: what an aborted transaction wrote never happened."""
    options: dict[str, kafka_clients.ConfigValue] = {
        "logger": _QUIET,
        "isolation.level": "read_committed",
    }
    consumer = kafka_clients.consumer(settings, group_id, **options)
    try:
        try:
            consumer.list_topics(timeout=BROKER_TIMEOUT_S)
        except KafkaException as exc:
            raise InfraError(
                f"cannot reach the Kafka broker at {settings.effective_kafka_bootstrap()} "
                f"within {BROKER_TIMEOUT_S:.0f} s ({exc.args[0].str()}): is it running "
                "(`nba infra status`)? is NBA_KAFKA_BOOTSTRAP right?"
            ) from None
        if kafka_clients.partition_count(consumer, topic) is None:
            raise ConfigError(f"topic {topic!r} does not exist on the broker")
        consumer.subscribe([topic])
    except BaseException:
        consumer.close()
        raise
    return consumer


def read_topic(settings: Settings, topic: str, timeout_s: float = 60.0) -> list[bytes]:
    """The whole topic, read by a throw-away group that commits nothing."""
    consumer = topic_consumer(settings, topic, f"nba-reader-{uuid.uuid4().hex[:8]}")
    try:
        return read_to_end(consumer, timeout_s)
    finally:
        consumer.close()
