"""`nba worker`: the Faust app. One consumer group (NBA_CONSUMER_GROUP), any number of workers.

Agents:

- ``decide`` reads the events topic as raw bytes in micro-batches (``take_events``: up to
  NBA_BATCH_SIZE events or NBA_BATCH_WAIT_S seconds) and hands each batch to the decision
  engine (stream_app.engine): validation with DLQ, the customers' streaming aggregates in the
  changelogged table ``customer-activity`` and their write to the Feast online store, triggers,
  one bundle call, the policy, the ledger, publish. The batch's events are acknowledged (and
  their offsets committed by Faust) only after the engine has flushed its output, and Faust
  commits only over events the agents processed (stream_app.commit_guard): at least once.
- ``outcomes`` reads the outcomes topic and counts realized outcomes per arm and action, joined
  to the decision by action_id (stream_app.outcome_feed).

Why the engine's own confluent-kafka producer inside the agent: it is idempotent, partitions
with murmur2 like Faust (STACK_NOTES), and ``flush`` gives the per-batch "everything is on the
broker" point the engine already relies on. Its flush blocks the event loop for the few
milliseconds a batch takes to deliver, well inside the consumer's session timeout.
The table is keyed by customer_id with ``use_partitioner``: its changelog partition is the
murmur2 partition of the key, the same as the customer's events, so a batch can update many
customers at once and each update lands in the partition the worker owns.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

import faust
from faust.streams import Stream
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import EventT, StreamT

from policies.errors import ConfigError
from stream_app import kafka_clients
from stream_app.aggregates import updated, windows
from stream_app.commit_guard import CommitGuard, LogProbe
from stream_app.engine import BatchStats, DecisionEngine, DeliveryError
from stream_app.feature_store import FeatureStoreAdapter
from stream_app.ledger import LedgerLost
from stream_app.log_limits import limit_repeats
from stream_app.messages import EngagementEvent
from stream_app.metrics import EngineMetrics
from stream_app.outage import OutageWaiter
from stream_app.outcome_feed import OutcomeFeed
from stream_app.pipeline import RawMessage
from stream_app.settings import Settings

__all__ = ["EngineApp", "create_app"]

_OUTCOME_BATCH = 500
Aggregates = Callable[[list[tuple[RawMessage, EngagementEvent]]], None]
_LOG = logging.getLogger("nba.worker")


class _NewChangelogNotYetKnown(logging.Filter):
    """Drops aiokafka's ERROR "Topic <...>-changelog not found in cluster metadata".

    Faust creates the table's changelog topic at start; for a moment the broker's metadata does
    not list it yet, and aiokafka logs each such lookup at ERROR although nothing is wrong (the
    worker waits for the topic in ``_changelog_known`` before its first batch). Any other topic
    missing from the metadata is still logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.msg, str) or not record.msg.startswith("Topic %s not found"):
            return True
        if not record.args:
            return True
        topic = record.args[0] if isinstance(record.args, tuple) else None
        return not (isinstance(topic, str) and topic.endswith("-changelog"))


logging.getLogger("aiokafka.cluster").addFilter(_NewChangelogNotYetKnown())
limit_repeats()


def _bounded_fetch_wait(wait_ms: int) -> None:
    """Make Faust's consumer ask the broker to answer a fetch within ``wait_ms``.

    faust-streaming 0.15.3 hard-codes ``fetch_max_wait_ms=1500`` for its aiokafka consumer
    (faust/transport/drivers/aiokafka.py); measured here, events then arrive in bursts about
    every 1.1-1.6 s even at a steady 1,000 events/s, and that wait dominates event-to-action
    latency (benchmarks/end_to_end.py). There is no setting for it, so the consumer the driver
    creates gets the bound before it starts (aiokafka builds its fetcher from it at start)."""
    original = AIOKafkaConsumerThread._create_worker_consumer
    if getattr(original, "_nba_bounded", False):
        return

    def create(self: AIOKafkaConsumerThread, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = wait_ms
        return consumer

    create._nba_bounded = True  # type: ignore[attr-defined]
    AIOKafkaConsumerThread._create_worker_consumer = create  # type: ignore[method-assign]


def _rewind_uncommitted(consumer: Any, sources: frozenset[str]) -> None:
    """Read a source partition that has no committed offset from its beginning, always.

    Seen in the kill -9 test with faust-streaming 0.15.3 / aiokafka: when a rebalance hands a
    worker a partition the group never committed (its previous owner died first), aiokafka
    resets it to the earliest offset and prefetches it while Faust still holds the flow for
    table recovery; Faust then "seeks to committed", which for no committed offset (or 0)
    does nothing, so consumption resumes after the discarded prefetch, at the partition's end:
    those events were never processed, with nothing logged. Seeking such partitions to 0
    makes the restart point explicit (past the log start, the earliest-reset policy applies).
    Changelog partitions are left to Faust's recovery."""
    original = consumer.seek_to_committed

    async def seek_to_committed() -> Any:
        committed = await original()
        for tp, offset in committed.items():
            if tp.topic in sources and not offset:
                await consumer.seek(tp, 0)
        return committed

    consumer.seek_to_committed = seek_to_committed


def _broker_options(settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "broker": [f"kafka://{h.strip()}" for h in settings.effective_kafka_bootstrap().split(",")],
        "broker_session_timeout": settings.kafka_session_timeout_ms / 1000,
        "broker_heartbeat_interval": settings.kafka_heartbeat_interval_ms / 1000,
    }
    if settings.kafka_sasl_mechanism:
        password = settings.kafka_sasl_password
        options["broker_credentials"] = faust.SASLCredentials(
            username=settings.kafka_sasl_username or "",
            password=password.get_secret_value() if password else "",
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=_ssl_context(settings),
        )
    elif settings.kafka_security_protocol.upper() == "SSL":
        options["broker_credentials"] = faust.SSLCredentials(_ssl_context(settings))
    return options


def _ssl_context(settings: Settings) -> Any:
    if not settings.kafka_security_protocol.upper().endswith("SSL"):
        return None
    import ssl

    cafile = str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
    return ssl.create_default_context(cafile=cafile)


def _raw(event: EventT[bytes]) -> RawMessage:
    message = event.message
    listed = message.headers
    pairs = list(listed.items()) if isinstance(listed, Mapping) else list(listed or [])
    return RawMessage(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key if isinstance(message.key, bytes) else None,
        value=message.value if isinstance(message.value, bytes) else None,
        headers={str(k): v for k, v in pairs if isinstance(v, bytes)},
        timestamp_ms=int(message.timestamp * 1000) if message.timestamp else 0,
    )


def _batches(
    stream: StreamT[bytes], size: int, within: float
) -> AsyncIterator[Sequence[EventT[bytes]]]:
    """``take_events``: Faust acknowledges a batch's events only when the next is asked for."""
    if not isinstance(stream, Stream):
        raise TypeError(f"a Faust Stream is needed, got {type(stream).__name__}")
    return stream.take_events(size, within=within)


def _die(agent: str) -> NoReturn:
    """A batch that cannot be processed (a bug, or a dependency down for longer than
    NBA_MAX_OUTAGE_S) ends the process at once.

    Faust acknowledges a batch's events when its iterator is closed, whatever happened to them,
    so leaving the loop by an exception would commit events that were never decided. Exiting
    without running any clean-up leaves their offsets uncommitted: the restarted worker (or
    another one of the group) decides them again, with the same action_ids."""
    _LOG.exception("agent %s: the batch failed; exiting without committing it", agent)
    logging.shutdown()
    sys.stderr.flush()
    os._exit(70)  # EX_SOFTWARE


class EngineApp:
    """The Faust app with its agents and table, around one decision engine."""

    def __init__(
        self,
        settings: Settings,
        partitions: int,
        build_engine: Callable[[Aggregates], DecisionEngine],
        features: FeatureStoreAdapter,
        outcome_feed: OutcomeFeed,
        restore_ledger: Callable[[DecisionEngine], object],
        metrics: EngineMetrics | None = None,
    ) -> None:
        self.settings = settings
        self._metrics = metrics
        self._restore_ledger = restore_ledger
        self._outage = OutageWaiter(settings.max_outage_s, metrics, on_wait=self._report_lag)
        _bounded_fetch_wait(settings.kafka_fetch_max_wait_ms)
        datadir = settings.state_dir / "faust" / settings.consumer_group
        datadir.mkdir(parents=True, exist_ok=True)
        self.app = faust.App(
            settings.consumer_group,
            **_broker_options(settings),
            key_serializer="raw",
            value_serializer="raw",
            topic_partitions=settings.topic_partitions,
            topic_replication_factor=settings.topic_replication_factor,
            store="memory://",  # the table lives in memory, rebuilt from its changelog topic
            datadir=str(datadir),
            consumer_auto_offset_reset="earliest",
            processing_guarantee="at_least_once",
            web_enabled=False,
            autodiscover=False,
        )
        self.activity = self.app.Table(
            "customer-activity",
            default=None,
            partitions=partitions,  # the events topic's: each customer's state stays with them
            key_type=bytes,  # raw keys: the same bytes, so the same partition, as the events
            use_partitioner=True,
        )
        # Table updates queue their changelog records in Faust's producer buffer; past
        # max_messages Faust stops the stream until it drains. A batch updates up to one record
        # per event, so the buffer must hold a batch or the stream stalls between batches.
        self.app.producer.buffer.max_messages = max(1_000, 4 * settings.batch_size)
        sources = frozenset({settings.topic_events, settings.topic_outcomes})
        _rewind_uncommitted(self.app.consumer, sources)
        self._probe = LogProbe(kafka_clients.consumer(settings, f"{settings.consumer_group}-probe"))
        self._commits = CommitGuard(self.app.consumer, sources, self._probe)
        self._features = features
        self.engine = build_engine(self._aggregate)
        self._outcomes = outcome_feed
        self._next_offsets: dict[Any, int] = {}
        self.consumed = 0
        events = self.app.topic(settings.topic_events)
        outcomes = self.app.topic(settings.topic_outcomes)
        self.app.agent(events, name="decide")(self._decide)
        self.app.agent(outcomes, name="outcomes")(self._count_outcomes)

    def _aggregate(self, events: list[tuple[RawMessage, EngagementEvent]]) -> None:
        """Update each customer's activity in the table, then write the short windows to the
        online store before anything is scored."""
        by_customer: dict[str, list[tuple[int, EngagementEvent]]] = defaultdict(list)
        for raw, event in events:
            by_customer[event.customer_id].append((raw.offset, event))
        rows = []
        for customer, mine in by_customer.items():
            key = customer.encode()
            state = updated(self.activity.get(key), mine)
            self.activity[key] = state
            as_of = datetime.fromtimestamp(state["times"][-1], UTC)
            rows.append((customer, as_of, windows(state)))
        self._features.write_windows(rows)

    async def _decide(self, stream: StreamT[bytes]) -> None:
        try:
            await self._changelog_known()
        except Exception:
            _die("decide")
        settings = self.settings
        batches = _batches(stream, settings.batch_size, settings.batch_wait_s)
        async for batch in batches:
            try:
                stats = await self._outage.until_done(self._batch_step(batch), "decide")
            except Exception:
                _die("decide")
            self._commits.record(batch)
            self.consumed += stats.consumed

    async def _changelog_known(self) -> None:
        """Wait until the producer knows the table's changelog topic.

        aiokafka's producer picks a table write's partition synchronously from its metadata:
        on a broker that has only just created the changelog topic, the first batch found it
        unknown (TypeError in aiokafka's ``_partition``, seen on a cold broker) and the worker
        exited. Faust's producer wrapper has no public way to ask, hence its aiokafka producer."""
        topic = self.activity.changelog_topic.get_topic_name()
        await self.app.producer._ensure_producer().partitions_for(topic)  # type: ignore[attr-defined]

    def _batch_step(self, batch: Sequence[EventT[bytes]]) -> Callable[[], BatchStats]:
        """One try at the batch: process it (unless an earlier try did and only its flush
        failed), flush, then the gauges. Every part is safe to repeat: decisions are stored by
        action_id and republished, reservations are keyed by it, the aggregates count an offset
        once, contacts are recorded as a set."""
        raws = [_raw(event) for event in batch]
        processed: list[BatchStats] = []

        def step() -> BatchStats:
            if not processed:
                try:
                    processed.append(self.engine.process(raws))
                except LedgerLost:
                    self.engine.close()  # what is queued reaches the topic before it is read
                    self._restore_ledger(self.engine)
                    raise  # the batch is tried again on the rebuilt ledger
            try:
                self.engine.flush()
            except DeliveryError as exc:
                if not exc.still_queued:
                    processed.clear()  # records failed: decide (or republish) them again
                raise
            for event in batch:
                self._next_offsets[event.message.tp] = event.message.offset + 1
            self.engine.after_batch(self._lag())
            if self._metrics is not None:
                self._metrics.last_batch.set(time.time())
            return processed[0]

        return step

    def _report_lag(self) -> None:
        if self._metrics is not None:
            self._metrics.consumer_lag.set(self._lag())

    def _lag(self) -> int:
        """Events not yet decided on the partitions this worker holds now."""
        consumer = self.app.consumer
        assigned = consumer.assignment()
        for tp in [tp for tp in self._next_offsets if tp not in assigned]:
            del self._next_offsets[tp]  # moved to another worker in a rebalance
        return sum(
            max(consumer.highwater(tp) - offset, 0) for tp, offset in self._next_offsets.items()
        )

    async def _count_outcomes(self, stream: StreamT[bytes]) -> None:
        async for batch in _batches(stream, _OUTCOME_BATCH, 1.0):
            count = functools.partial(self._outcomes.count, [e.message.value for e in batch])
            try:
                await self._outage.until_done(count, "outcomes")
            except Exception:
                _die("outcomes")
            self._commits.record(batch)

    def run(self) -> None:
        """Run until SIGTERM or SIGINT (Faust's worker handles both and stops cleanly)."""
        worker = faust.Worker(
            self.app, loglevel=self.settings.log_level, quiet=True, redirect_stdouts=False
        )
        worker.spinner = None  # its terminal escapes would land in log files
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise RuntimeError(f"the Faust worker stopped with exit code {exc.code}") from None
        finally:
            self.engine.close()
            self._probe.close()


def _partitions(settings: Settings, topic: str) -> int:
    """How many partitions the topic has on the broker (a missing topic is a setup error)."""
    count = kafka_clients.partition_count(kafka_clients.admin(settings), topic)
    if count is None:
        raise ConfigError(
            f"events topic {topic!r} does not exist on the broker (NBA_TOPIC_EVENTS); create it "
            "with as many partitions as workers you may run"
        )
    return count


def create_app(settings: Settings, metrics: EngineMetrics | None = None) -> EngineApp:
    """The worker's Faust app for these settings (the engine as `nba worker` serves it)."""
    from stream_app.engine.state import DecisionState
    from stream_app.ledger_restore import restore_ledger
    from stream_app.redis_clients import redis_client
    from stream_app.worker import build_engine, feature_store

    features = feature_store(settings)
    client = redis_client(settings)
    return EngineApp(
        settings,
        _partitions(settings, settings.topic_events),
        lambda aggregates: build_engine(settings, features, metrics=metrics, aggregates=aggregates),
        features,
        OutcomeFeed(client, settings.topic_outcomes, metrics),
        lambda engine: restore_ledger(
            settings, engine.ledger, DecisionState(client, settings.topic_events)
        ),
        metrics,
    )
