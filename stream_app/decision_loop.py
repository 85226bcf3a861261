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

1. the engine validates, decides and produces (stream_app.engine); its records are held in
   ``RenewableProducer`` while the previous batch's commit runs;
2. once that commit has landed, ``begin_transaction`` and the held records produced;
3. in a helper thread, while the next batch is decided: ``send_offsets_to_transaction`` with
   the next offset of each partition of the batch and the consumer group's metadata
   (``commit_group``: if a rebalance took a partition away while the batch was read, the
   metadata of before it, which the broker refuses, and the batch is read again by the
   partitions' owner), ``commit_transaction``, then the engine records what the commit made
   true (delivered marks, contacts).

The batch decided meanwhile acts as if the commit succeeded: the committing batch's next
offsets count as committed (a re-sent trigger of it publishes nothing) and its contacts as made
(``ContactLog.hold``). If the commit fails, that batch is dropped, in no transaction yet, and
read again after the failed one.

Only a batch of at least ``NBA_OVERLAP_MIN_EVENTS`` events (default 50) is decided while the
last one commits; a smaller one waits for that commit to land, and what arrives during that
wait joins it (decided now rather than a cycle later, in one transaction). Overlapping shortens
the loop's cycle, so batches get smaller and transactions more numerous, each with its fixed
cost for the worker and the broker: measured on a 2-core machine, overlapping every batch cut
the event stream's latency at 5,000 events/s (batches of ~100) but raised an HTTP request's at
500 requests/s (batches of a few), where that cost is paid by a machine already saturated.

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
broker restart: the worker stayed blocked in it for minutes). The helper thread is therefore
awaited with a deadline; past it, the producer is replaced as after a fatal error (the blocked
call's thread and old producer are left to end when the fenced producer gives up).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import enum
import logging
import threading
import time
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
from stream_app.engine.publisher import BatchRecord
from stream_app.ledger import LedgerLost
from stream_app.metrics import timed
from stream_app.outage import OutageWaiter
from stream_app.pipeline import RawMessage

__all__ = [
    "BatchStats",
    "DecisionLoop",
    "LoopSettings",
    "Membership",
    "RenewableProducer",
    "Read",
    "commit_group",
    "next_batch",
    "raw_message",
]

_LOG = logging.getLogger("nba.worker")
_TRANSACTION_CALL_S = 10.0  # one transactional call's wait; a timeout is retried as an outage
_HUNG_GRACE_S = 5.0  # past its own timeout plus this, a call is taken for hung
_SLOW_COMMIT_S = 1.0  # a commit slower than this is logged


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


def arrived(consumer: Consumer, size: int) -> list[Message]:
    """Up to ``size`` records that have already arrived, without waiting."""
    messages = consumer.consume(size, 0) if size > 0 else []
    return [m for m in messages if m.error() is None]


Partition = tuple[str, int]


@dataclass(frozen=True)
class Membership:
    """The partitions a consumer holds and its group metadata, at one moment."""

    held: frozenset[Partition]
    group: Any  # confluent-kafka's ConsumerGroupMetadata

    @classmethod
    def of(cls, consumer: Consumer) -> Membership:
        held = frozenset((tp.topic, tp.partition) for tp in consumer.assignment())
        return cls(held, consumer.consumer_group_metadata())


@dataclass(frozen=True)
class Read:
    """A batch's records, and the consumer's membership before reading them
    (``commit_group``)."""

    messages: list[Message]
    before: Membership


def commit_group(consumer: Consumer, before: Membership) -> Any:
    """The group metadata a batch's offsets commit with. If a read of the batch met a
    rebalance that took a partition away, the metadata of before it, which the broker refuses
    as stale: the batch is aborted and its events read again by their partitions' owner. With
    today's metadata, a partition handed to another worker meanwhile would be committed by both,
    and its events decided by both. Otherwise today's, so that a worker's first batch, or one
    after a rebalance that left its partitions in place, commits."""
    now = Membership.of(consumer)
    return before.group if before.held - now.held else now.group


def next_batch(consumer: Consumer, size: int, wait_s: float) -> Read:
    """What has arrived, up to ``size`` records, at once; when nothing has, the first record to
    arrive within ``wait_s`` and whatever came with it. Records carrying an error are left out.

    librdkafka's ``consume(n, timeout)`` returns only when it has ``n`` records or the timeout
    passed, so asking for a full batch with a wait would hold every record of a quiet stream
    for the whole wait. Under load, batches still grow by themselves: what arrives while a
    batch is decided and committed is the next batch."""
    before = Membership.of(consumer)
    messages = consumer.consume(size, 0)
    if not messages:
        messages = consumer.consume(1, wait_s)
        if messages and size > 1:
            messages += consumer.consume(size - 1, 0)
    return Read([m for m in messages if m.error() is None], before)


class _Phase(enum.Enum):
    ABORTING = "aborting"  # the transaction must be aborted before anything else
    COMMITTING = "committing"  # commit_transaction timed out: it must be called again
    RECORDING = "recording"  # committed; the engine's after-commit writes are still due


@dataclass
class _Commit:
    """A batch's offsets and commit, running in a helper thread (``DecisionLoop._start_commit``).
    ``step``: the one it is in, or failed in."""

    done: concurrent.futures.Future[None] = field(default_factory=concurrent.futures.Future)
    step: str = "offsets"  # then "commit", then "record" (the after-commit writes)
    seconds: dict[str, float] = field(default_factory=dict)  # offsets, commit: how long each took


@dataclass
class _Batch:
    raws: list[RawMessage]
    before: Membership  # the consumer's, before the batch's first read (see commit_group)
    phase: _Phase = _Phase.ABORTING
    stats: BatchStats = field(default_factory=BatchStats)
    record: BatchRecord = field(default_factory=BatchRecord)  # set once decided
    commit: _Commit = field(default_factory=_Commit)  # started by _start_commit

    def first_offsets(self) -> dict[tuple[str, int], int]:
        first: dict[tuple[str, int], int] = {}
        for raw in self.raws:
            first.setdefault((raw.topic, raw.partition), raw.offset)
        return first

    def next_offsets(self) -> dict[tuple[str, int], int]:
        """The offset after the batch's last record, per partition."""
        last: dict[tuple[str, int], int] = {}
        for raw in self.raws:
            last[(raw.topic, raw.partition)] = max(
                raw.offset, last.get((raw.topic, raw.partition), -1)
            )
        return {partition: offset + 1 for partition, offset in last.items()}


def _requires_abort(error: KafkaException) -> bool:
    first = error.args[0] if error.args else None
    return isinstance(first, KafkaError) and bool(first.txn_requires_abort())


def _fatal(error: KafkaException) -> bool:
    first = error.args[0] if error.args else None
    return isinstance(first, KafkaError) and bool(first.fatal())


class RenewableProducer:
    """The engine's transactional producer, replaceable after a fatal error: every call goes to
    the current instance, so the engine's parts need not know (they hold this object).

    While held (``hold``), records are kept here instead: a batch is decided while the last
    batch's transaction commits, and its records enter its own transaction once that begins
    (``release``)."""

    def __init__(self, create: Callable[[], Producer]) -> None:
        self._create = create
        self.current = create()
        self._held: list[tuple[tuple[Any, ...], dict[str, Any]]] | None = None

    def renew(self) -> None:
        """A new producer with the same transactional.id (its init fences the old one)."""
        self.current = self._create()

    def produce(self, *args: Any, **kwargs: Any) -> None:
        if self._held is None:
            self.current.produce(*args, **kwargs)
        else:
            self._held.append((args, kwargs))

    def hold(self) -> None:
        """Keep the records produced from now on (a held batch's are dropped)."""
        self._held = []

    def release(self) -> None:
        """Produce the held records, in order, to the current producer; stop holding."""
        held, self._held = self._held or [], None
        for args, kwargs in held:
            self.current.produce(*args, **kwargs)

    def drop(self) -> None:
        """Forget the held records (their batch is processed again); stop holding."""
        self._held = None

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
        self._pending: _Batch | None = None  # a failed batch, settled before anything else
        self._inflight: _Batch | None = None  # a batch whose transaction commits meanwhile
        self._first: dict[tuple[str, int], int] = {}
        self._landed = BatchStats()  # committed since the last report
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
        """One batch decided and its transaction handed to a helper thread to commit, while the
        previous batch's commit is awaited (or, after a failure, that batch settled). Returns
        the stats of the batches committed meanwhile."""
        if self._must_renew:
            self._producer.renew()
            self._producer.init_transactions(_TRANSACTION_CALL_S * 3)
            self._must_renew = False
        if self._pending is not None:
            self._settle(self._pending)
            return self._report()
        settings = self.engine.settings
        # With a commit in flight, no wait: nothing new means that commit is awaited now.
        wait_s = 0.0 if self._inflight is not None else settings.batch_wait_s
        read = next_batch(self._consumer, settings.batch_size, wait_s)
        messages = read.messages
        if messages:
            batch = _Batch([raw_message(m) for m in messages], read.before)
            if self._inflight is not None and len(messages) < settings.overlap_min_events:
                # Too small to pay for one more transaction (see the module doc); read again
                # if that commit fails. What arrived while it was awaited joins the batch: it
                # would otherwise wait a whole cycle, and pay a transaction of its own.
                self._land(self._inflight, dropping=batch)
                more = arrived(self._consumer, settings.batch_size - len(messages))
                batch = _Batch(batch.raws + [raw_message(m) for m in more], read.before)
            self._decide(batch)
        else:
            if self._inflight is not None:
                self._land(self._inflight)
            self.engine.after_batch(self.lag())
        return self._report()

    def run_until(self, stop: threading.Event, waiter: OutageWaiter) -> None:
        """Batches until ``stop`` is set, outages waited out (``waiter`` with the same
        ``stop`` ends its waits early); a batch in flight finishes first."""
        while not stop.is_set():
            self.consumed += waiter.run(self.run_once, "decide").consumed
        self.consumed += waiter.run(self.finish, "decide").consumed

    def finish(self) -> BatchStats:
        """The batch in flight (or a failed one) committed; nothing new is read."""
        if self._pending is not None:
            self._settle(self._pending)
        if self._inflight is not None:
            self._land(self._inflight)
        return self._report()

    def _decide(self, batch: _Batch) -> None:
        """Decide ``batch`` while the previous batch commits; once that commit has landed,
        begin ``batch``'s transaction with its records and start its commit.

        Deciding first is safe because a batch decided meanwhile is dropped and read again
        whenever the previous commit fails: it acts as if that commit succeeded (its offsets
        count as committed, its contacts as made: ``DecisionEngine.in_flight``)."""
        previous = self._inflight
        self._first = {
            **(previous.next_offsets() if previous is not None else {}),
            **batch.first_offsets(),
        }
        self._producer.hold()  # no transaction is open before the previous commit lands
        try:
            batch.stats = self.engine.process(batch.raws, self._committed_offset)
        except BaseException as exc:
            self._drop(batch)
            if previous is not None:
                self._land(previous)
            self._rebuild_if_lost(exc)
            raise
        batch.record = self.engine.seal()
        if previous is not None:
            self._land(previous, dropping=batch)
        try:
            self._producer.begin_transaction()
            self._producer.release()
            self.engine.in_flight(batch.record)
            self._start_commit(batch)
        except BaseException as exc:
            self._producer.drop()
            self._fail(batch, exc)
            raise
        # The pacing price and gauges after the previous batch, while this one commits.
        self.engine.after_batch(self.lag())

    def _start_commit(self, batch: _Batch) -> None:
        """The batch's offsets into its transaction, the commit and the after-commit writes, in
        a helper thread (``_land`` awaits them). A thread per batch: ``send_offsets`` may hang
        past its timeout (see the module doc), and a hung call must not block the next one."""
        producer = self._producer.current
        offsets = [TopicPartition(t, p, offset) for (t, p), offset in batch.next_offsets().items()]
        metadata = commit_group(self._consumer, batch.before)
        commit = batch.commit

        def run() -> None:
            try:
                with timed(self.engine.metrics, "commit"):
                    started = time.perf_counter()
                    producer.send_offsets_to_transaction(offsets, metadata, _TRANSACTION_CALL_S)
                    sent = time.perf_counter()
                    commit.step = "commit"
                    producer.commit_transaction(_TRANSACTION_CALL_S)
                commit.seconds = {"offsets": sent - started, "commit": time.perf_counter() - sent}
                # At once, not when the loop next looks: an HTTP request awaits these marks.
                commit.step = "record"
                self.engine.committed(batch.record)
                commit.done.set_result(None)
            except BaseException as exc:
                commit.done.set_exception(exc)

        threading.Thread(target=run, name="nba-commit", daemon=True).start()
        self._inflight = batch

    def _land(self, batch: _Batch, dropping: _Batch | None = None) -> None:
        """Await ``batch``'s commit. If it failed, ``dropping`` (a batch decided meanwhile and
        in no transaction yet) is read again, and ``batch`` is settled first by the next try:
        a commit that timed out is retried as such (librdkafka's rule), never aborted; one the
        broker refused as abortable, or any other failure, aborts it and it is processed again
        (a fatal producer error, or a hung call, also replaces the producer)."""
        self._inflight = None
        commit = batch.commit
        try:
            commit.done.result(timeout=_TRANSACTION_CALL_S * 2 + _HUNG_GRACE_S)
        except BaseException as exc:
            if dropping is not None:
                self._drop(dropping)
            step = commit.step  # read once: a hung thread may still move on
            if step == "record":  # committed: only the after-commit writes are due again
                batch.phase = _Phase.RECORDING
                self._pending = batch
                raise
            if isinstance(exc, concurrent.futures.TimeoutError):
                _LOG.warning(
                    "decide: the transaction's %s did not return within %.0f s "
                    "(librdkafka#5456); a new producer takes over",
                    step,
                    _TRANSACTION_CALL_S * 2 + _HUNG_GRACE_S,
                )
                self._must_renew = True
                hung = KafkaException(KafkaError(KafkaError._TIMED_OUT, f"{step} hung"))
                self._fail(batch, hung)
                raise hung from None
            if step == "commit" and isinstance(exc, KafkaException):
                if not (_requires_abort(exc) or _fatal(exc)):
                    batch.phase = _Phase.COMMITTING
                    self._pending = batch
                    raise
            self._fail(batch, exc)
            raise
        if sum(commit.seconds.values()) > _SLOW_COMMIT_S:  # so that a stall names its step
            _LOG.warning(
                "decide: a batch's transaction took %.1f s to commit (offsets %.2f s, commit "
                "%.2f s)",
                sum(commit.seconds.values()),
                commit.seconds["offsets"],
                commit.seconds["commit"],
            )
        self._recorded(batch)

    def _settle(self, batch: _Batch) -> None:
        """A failed batch's transaction committed again, or aborted and its events read again."""
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
            return  # its events come again from the rewound partitions
        self.engine.committed(batch.record)
        self._recorded(batch)
        self.engine.after_batch(self.lag())

    def _recorded(self, batch: _Batch) -> None:
        self._pending = None
        self._landed.add(batch.stats)

    def _report(self) -> BatchStats:
        landed, self._landed = self._landed, BatchStats()
        return landed

    def _fail(self, batch: _Batch, error: BaseException) -> None:
        """Abort now if the broker lets us (else the next try does), then rebuild a lost
        ledger: the actions topic it is rebuilt from then holds nothing of this batch."""
        self._pending = batch
        batch.phase = _Phase.ABORTING
        with contextlib.suppress(KafkaException):
            self._abort(batch)
        self._rebuild_if_lost(error)

    def _rebuild_if_lost(self, error: BaseException) -> None:
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
        self._rewind(batch)

    def _drop(self, batch: _Batch) -> None:
        """A batch decided but in no transaction yet: its records are forgotten and its events
        read again (its decisions stay stored: the next try republishes them)."""
        self._producer.drop()
        self.engine.discard()
        self._rewind(batch)

    def _rewind(self, batch: _Batch) -> None:
        for (topic, partition), offset in batch.first_offsets().items():
            # a partition revoked meanwhile is no longer ours to seek: its new owner reads it
            with contextlib.suppress(KafkaException):
                self._consumer.seek(TopicPartition(topic, partition, offset))

    def _committed_offset(self, topic: str, partition: int) -> int | None:
        """The group's committed offset: a batch starts at it, so the batch's first offset of
        the partition; or the batch in flight's next offset (the batch is dropped if that one
        fails to commit); a partition outside both is asked of the broker."""
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
        """Leave the consumer group (nothing to commit: offsets travel in transactions); a
        commit in flight is awaited first."""
        if self._inflight is not None:
            with contextlib.suppress(Exception):
                self._land(self._inflight)
        self.engine.close()
        self._consumer.close()
