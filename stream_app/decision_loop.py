"""The decide path: consume a micro-batch with confluent-kafka, let the engine decide, and
publish the decisions and DLQ records in one Kafka transaction together with the consumed
offsets (consume-transform-produce). A read_committed reader sees each batch's output once or
not at all, across kill -9, SIGTERM, broker restarts and rebalances.

Why confluent-kafka and not Faust's consumer: a transaction commits consumed offsets with
``send_offsets_to_transaction(offsets, consumer.consumer_group_metadata())``, and the group
metadata must come from a confluent-kafka consumer of the same group (shared/STACK_NOTES.md);
faust-streaming's own ``exactly_once`` has open reports of duplicates after a kill (#517) and
crashes on rebalance (#323). `nba worker` runs this loop in a thread of the Faust worker
(stream_app.faust_app); tests and benchmarks run it in-process.

One batch, one transaction:

1. ``begin_transaction``; the engine validates, decides and produces (stream_app.engine);
2. ``send_offsets_to_transaction`` with the next offset of each partition of the batch;
3. ``commit_transaction``; then the engine records what the commit made true (delivered
   marks, contacts).

A failure before the commit (Redis away, a refused record, the ledger lost) aborts the
transaction and seeks the batch's partitions back to its first offsets: the next try reads the
same events and republishes the stored decisions (same action_ids, same bytes, no new spend).
A commit that timed out is retried as such (librdkafka's rule), never aborted; a commit the
broker refused as abortable (e.g. the transaction timed out during an outage) is aborted and
the batch processed again. Any other fatal producer error (seen here: INVALID_TXN_STATE when
aborting after the broker vanished mid-transaction) replaces the producer: a new one with the
same transactional.id fences the old and aborts its transaction, and the batch is processed
again. Only a producer fenced by another worker with the same id ends the worker.

``send_offsets_to_transaction`` may block past its timeout when the group coordinator went
away (librdkafka 2.16: confluentinc/librdkafka#5456, #5511, both open; seen here after a
broker restart: the worker stayed blocked in it for minutes). It is therefore called in a
helper thread with a deadline; past it, the producer is replaced as after a fatal error (the
blocked call's thread and old producer are left to end when the fenced producer gives up).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from stream_app.engine import BatchStats, DecisionEngine, LoopSettings, assemble
from stream_app.ledger import LedgerLost
from stream_app.outage import OutageWaiter
from stream_app.pipeline import RawMessage

__all__ = [
    "BatchStats",
    "DecisionLoop",
    "LoopSettings",
    "RenewableProducer",
    "next_batch",
    "raw_message",
]

_LOG = logging.getLogger("nba.worker")
_TRANSACTION_CALL_S = 10.0  # one transactional call's wait; a timeout is retried as an outage
_HUNG_GRACE_S = 5.0  # past its own timeout plus this, a call is taken for hung


def raw_message(msg: Message) -> RawMessage:
    listed = msg.headers() or []
    pairs = listed.items() if isinstance(listed, dict) else listed
    headers = {str(k): v for k, v in pairs if isinstance(v, bytes)}
    return RawMessage(
        topic=msg.topic() or "",
        partition=msg.partition() or 0,
        offset=msg.offset() or 0,
        key=msg.key() if isinstance(msg.key(), bytes) else None,
        value=msg.value() if isinstance(msg.value(), bytes) else None,
        headers=headers,
        timestamp_ms=msg.timestamp()[1],
    )


def next_batch(consumer: Consumer, size: int, wait_s: float) -> list[Message]:
    """What has arrived, up to ``size`` records, at once; when nothing has, the first record to
    arrive within ``wait_s`` and whatever came with it. Records carrying an error are left out.

    librdkafka's ``consume(n, timeout)`` returns only when it has ``n`` records or the timeout
    passed, so asking for a full batch with a wait would hold every record of a quiet stream
    for the whole wait. Under load, batches still grow by themselves: what arrives while a
    batch is decided and committed is the next batch."""
    messages = consumer.consume(size, 0)
    if not messages:
        messages = consumer.consume(1, wait_s)
        if messages and size > 1:
            messages += consumer.consume(size - 1, 0)
    return [m for m in messages if m.error() is None]


class _Phase(enum.Enum):
    ABORTING = "aborting"  # the transaction must be aborted before anything else
    COMMITTING = "committing"  # commit_transaction timed out: it must be called again
    RECORDING = "recording"  # committed; the engine's after-commit writes are still due


@dataclass
class _Batch:
    raws: list[RawMessage]
    phase: _Phase = _Phase.ABORTING
    stats: BatchStats = field(default_factory=BatchStats)

    def first_offsets(self) -> dict[tuple[str, int], int]:
        first: dict[tuple[str, int], int] = {}
        for raw in self.raws:
            first.setdefault((raw.topic, raw.partition), raw.offset)
        return first

    def next_offsets(self) -> list[TopicPartition]:
        last: dict[tuple[str, int], int] = {}
        for raw in self.raws:
            last[(raw.topic, raw.partition)] = max(
                raw.offset, last.get((raw.topic, raw.partition), -1)
            )
        return [TopicPartition(t, p, offset + 1) for (t, p), offset in last.items()]


def _requires_abort(error: KafkaException) -> bool:
    first = error.args[0] if error.args else None
    return isinstance(first, KafkaError) and bool(first.txn_requires_abort())


def _fatal(error: KafkaException) -> bool:
    first = error.args[0] if error.args else None
    return isinstance(first, KafkaError) and bool(first.fatal())


class RenewableProducer:
    """The engine's transactional producer, replaceable after a fatal error: every call goes to
    the current instance, so the engine's parts need not know (they hold this object)."""

    def __init__(self, create: Callable[[], Producer]) -> None:
        self._create = create
        self.current = create()

    def renew(self) -> None:
        """A new producer with the same transactional.id (its init fences the old one)."""
        self.current = self._create()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.current, name)


class DecisionLoop:
    """``consumer`` (subscribed, ``enable.auto.commit`` off) feeds ``engine`` (or the engine
    ``assemble`` builds from the other keyword arguments); ``producer`` (a RenewableProducer of
    kafka_clients.transactional_producer) is the engine's producer too.
    ``on_ledger_lost``: rebuilds the ledger before the batch is tried again."""

    def __init__(
        self,
        *,
        consumer: Consumer,
        producer: RenewableProducer,
        engine: DecisionEngine | None = None,
        on_ledger_lost: Callable[[DecisionEngine], object] | None = None,
        **parts: Any,
    ) -> None:
        # The engine's parts type their producer as confluent-kafka's; this one forwards to it.
        as_producer = cast(Producer, producer)
        self.engine = engine if engine is not None else assemble(producer=as_producer, **parts)
        self._consumer = consumer
        self._producer = producer
        self._on_ledger_lost = on_ledger_lost
        self._pending: _Batch | None = None
        self._first: dict[tuple[str, int], int] = {}
        self._must_renew = False
        self.consumed = 0
        # Fences an earlier run with the same transactional.id and aborts what it left open.
        producer.init_transactions(_TRANSACTION_CALL_S * 3)

    @property
    def ledger(self) -> Any:
        return self.engine.ledger

    @property
    def policy(self) -> Any:
        return self.engine.policy

    def run_once(self) -> BatchStats:
        """One batch through one transaction (or an earlier batch's transaction settled)."""
        if self._must_renew:
            self._producer.renew()
            self._producer.init_transactions(_TRANSACTION_CALL_S * 3)
            self._must_renew = False
        if self._pending is not None:
            return self._settle(self._pending)
        settings = self.engine.settings
        messages = next_batch(self._consumer, settings.batch_size, settings.batch_wait_s)
        if not messages:
            self.engine.after_batch(self.lag())
            return BatchStats()
        batch = self._pending = _Batch([raw_message(m) for m in messages])
        self._first = batch.first_offsets()
        try:
            self._producer.begin_transaction()
            batch.stats = self.engine.process(batch.raws, self._committed_offset)
            self._send_offsets(batch)
        except BaseException as exc:
            self._fail(batch, exc)
            raise
        batch.phase = _Phase.COMMITTING
        return self._settle(batch)

    def run_until(self, stop: threading.Event, waiter: OutageWaiter) -> None:
        """Batches until ``stop`` is set, outages waited out (``waiter`` with the same
        ``stop`` ends its waits early); a batch in flight finishes first."""
        while not stop.is_set():
            self.consumed += waiter.run(self.run_once, "decide").consumed

    def _send_offsets(self, batch: _Batch) -> None:
        """The batch's offsets into its transaction, within a deadline (see the module doc)."""
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        producer = self._producer.current
        offsets = batch.next_offsets()
        metadata = self._consumer.consumer_group_metadata()

        def send() -> None:
            try:
                producer.send_offsets_to_transaction(offsets, metadata, _TRANSACTION_CALL_S)
                done.set_result(None)
            except BaseException as exc:
                done.set_exception(exc)

        threading.Thread(target=send, name="nba-send-offsets", daemon=True).start()
        try:
            done.result(timeout=_TRANSACTION_CALL_S + _HUNG_GRACE_S)
        except concurrent.futures.TimeoutError:
            _LOG.warning(
                "decide: send_offsets_to_transaction did not return within %.0f s "
                "(librdkafka#5456); a new producer takes over",
                _TRANSACTION_CALL_S + _HUNG_GRACE_S,
            )
            self._must_renew = True
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "send_offsets hung")) from None

    def _settle(self, batch: _Batch) -> BatchStats:
        if batch.phase is _Phase.COMMITTING:
            try:
                self._producer.commit_transaction(_TRANSACTION_CALL_S)
            except KafkaException as exc:
                if _requires_abort(exc) or _fatal(exc):
                    self._fail(batch, exc)
                raise  # a timeout stays COMMITTING: the next try commits again
            batch.phase = _Phase.RECORDING
        if batch.phase is _Phase.ABORTING:
            self._abort(batch)
            return BatchStats()  # its events come again from the rewound partitions
        self.engine.committed()
        self._pending = None
        self.engine.after_batch(self.lag())
        return batch.stats

    def _fail(self, batch: _Batch, error: BaseException) -> None:
        """Abort now if the broker lets us (else the next try does), then rebuild a lost
        ledger: the actions topic it is rebuilt from then holds nothing of this batch."""
        batch.phase = _Phase.ABORTING
        with contextlib.suppress(KafkaException):
            self._abort(batch)
        if isinstance(error, LedgerLost) and self._on_ledger_lost is not None:
            self._on_ledger_lost(self.engine)

    def _abort(self, batch: _Batch) -> None:
        """Abort the batch's transaction (a producer in a fatal state, or one to be replaced
        anyway, is not asked: its replacement aborts it) and rewind its partitions."""
        try:
            if not self._must_renew:
                self._producer.abort_transaction(_TRANSACTION_CALL_S)
        except KafkaException as exc:
            if not _fatal(exc):
                raise
            _LOG.warning("decide: the producer failed (%s); a new one takes over", exc)
            self._must_renew = True
        self.engine.abandoned()
        self._pending = None
        for (topic, partition), offset in batch.first_offsets().items():
            # a partition revoked meanwhile is no longer ours to seek: its new owner reads it
            with contextlib.suppress(KafkaException):
                self._consumer.seek(TopicPartition(topic, partition, offset))

    def _committed_offset(self, topic: str, partition: int) -> int | None:
        """The group's committed offset: a batch starts at it, so the batch's first offset of
        the partition; a partition outside the batch is asked of the broker."""
        first = self._first.get((topic, partition))
        if first is not None:
            return first
        found = self._consumer.committed([TopicPartition(topic, partition)], _TRANSACTION_CALL_S)
        return found[0].offset if found and found[0].offset >= 0 else None

    def lag(self) -> int:
        """Events not yet decided on the partitions this loop holds now."""
        lag = 0
        assigned = self._consumer.assignment()
        for position in self._consumer.position(assigned) if assigned else []:
            _, high = self._consumer.get_watermark_offsets(position, cached=True)
            if high >= 0 and position.offset >= 0:
                lag += max(high - position.offset, 0)
        return lag

    def dependencies_answer(self) -> dict[str, bool]:
        return self.engine.dependencies_answer()

    def close(self) -> None:
        """Leave the consumer group (nothing to commit: offsets travel in transactions)."""
        self.engine.close()
        self._consumer.close()
