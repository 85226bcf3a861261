"""confluent-kafka client configuration built from the settings, in one place.

Every producer feeding a Faust topic uses ``partitioner="murmur2_random"``: confluent-kafka's
default partitioner places keys elsewhere than Faust/aiokafka (murmur2), which corrupts table
state after a rebalance (shared/STACK_NOTES.md).

librdkafka's own log lines (``%4|...``) would go straight to stderr; every client here hands
them to the Python logger ``nba.librdkafka`` instead, which the `nba` command line shows from
ERROR up (``nba.cli.main``): a worker's log keeps real failures, not librdkafka's chatter.
"""

from __future__ import annotations

import logging

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from stream_app.settings import Settings

__all__ = [
    "LIBRDKAFKA_LOGGER",
    "TRANSACTION_RETRY_BACKOFF_MS",
    "admin",
    "client_config",
    "consumer",
    "partition_count",
    "producer",
    "transactional_producer",
]


ConfigValue = str | int | float | bool | logging.Logger
TRANSACTION_RETRY_BACKOFF_MS = 5  # see transactional_producer
LIBRDKAFKA_LOGGER = logging.getLogger("nba.librdkafka")


def client_config(settings: Settings) -> dict[str, ConfigValue]:
    """Bootstrap and security options common to producers, consumers and admin clients."""
    config: dict[str, ConfigValue] = {
        "bootstrap.servers": settings.effective_kafka_bootstrap(),
        "security.protocol": settings.kafka_security_protocol,
        "logger": LIBRDKAFKA_LOGGER,
    }
    if settings.kafka_sasl_mechanism:
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
    if settings.kafka_sasl_username:
        config["sasl.username"] = settings.kafka_sasl_username
    if settings.kafka_sasl_password:
        config["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
    if settings.kafka_ssl_cafile:
        config["ssl.ca.location"] = str(settings.kafka_ssl_cafile)
    return config


def admin(settings: Settings) -> AdminClient:
    # confluent-kafka takes a logging.Logger as "logger"; its stub types the config as scalars.
    return AdminClient(client_config(settings))  # type: ignore[arg-type]


def producer(settings: Settings, **overrides: ConfigValue) -> Producer:
    config: dict[str, ConfigValue] = {
        **client_config(settings),
        "partitioner": "murmur2_random",
        "enable.idempotence": True,
        "linger.ms": 5,
    }
    config.update(overrides)
    return Producer(config)


def transactional_producer(
    settings: Settings, transactional_id: str, **overrides: ConfigValue
) -> Producer:
    """A producer for consume-transform-produce: ``init_transactions`` is the caller's (it
    waits for the broker). librdkafka caps a record's delivery time at the transaction's.

    A transaction begun right after the previous commit often finds the coordinator still
    writing that commit's markers: the broker answers CONCURRENT_TRANSACTIONS and the client
    retries after ``retry.backoff.ms``, librdkafka's 100 ms by default, so one batch in a few
    took 100 ms more in ``send_offsets_to_transaction`` (measured with benchmarks/api_latency.py
    and a timed decide loop). Kafka's Java client retries this case after 20 ms (KAFKA-5477);
    here the first retry comes after ``TRANSACTION_RETRY_BACKOFF_MS``, and later ones back off
    exponentially up to librdkafka's ``retry.backoff.max.ms`` (1 s), so an outage is not
    hammered (confluent-kafka-python#967 reports the same cure).

    ``linger.ms`` 0: a batch's records are all produced before its offsets and commit, so
    lingering batches nothing more and only delays the commit, which waits for their delivery.
    With the plain producer's 5 ms, the median of commit plus after-commit writes (a timed
    decide loop under benchmarks/end_to_end.py, 2026-12-04) was 3.4 ms at 1,000 events/s and
    4.5 ms at 5,000/s; with 0, 2.9 and 3.5 ms."""
    return producer(
        settings,
        **{
            "transactional.id": transactional_id,
            "transaction.timeout.ms": settings.kafka_transaction_timeout_ms,
            "retry.backoff.ms": TRANSACTION_RETRY_BACKOFF_MS,
            "linger.ms": 0,
            **overrides,
        },
    )


def consumer(settings: Settings, group_id: str, **overrides: ConfigValue) -> Consumer:
    config: dict[str, ConfigValue] = {
        **client_config(settings),
        "group.id": group_id,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": settings.kafka_session_timeout_ms,
        "heartbeat.interval.ms": settings.kafka_heartbeat_interval_ms,
    }
    config.update(overrides)
    return Consumer(config)


def partition_count(client: Consumer | AdminClient, topic: str) -> int | None:
    """How many partitions ``topic`` has on the broker; None when it does not exist."""
    listed = client.list_topics(topic, timeout=15).topics.get(topic)
    if listed is None or listed.error is not None or not listed.partitions:
        return None
    return len(listed.partitions)
