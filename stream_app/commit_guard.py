"""The Faust outcomes agent's commits cover only events it processed (at least once).

(The decide path commits its offsets in Kafka transactions and needs none of this:
stream_app.decision_loop.) Everything below reads or wraps private attributes of
faust-streaming's consumer, verified on ``VERIFIED_FAUST`` only: ``check_faust_version``
refuses any other version at the worker's start, and tests/stream_app/test_commit_guard.py
fails when the attributes it relies on change.

faust-streaming 0.15.3 commits past events that were never processed in several ways, which a
stop, crash or rebalance turns into lost events:

- a message that reaches a stream while flow control is suspended (a stop or rebalance is under
  way) or from an older consumer generation is skipped *and acknowledged*, "so that the lag does
  not grow" (faust/streams.py and its Cython twin);
- one missing offset at the head of a partition's acknowledged offsets is taken for a
  compacted-topic gap and committed over (faust-streaming/faust#606, fix proposed in #707, not
  released): committed 2585, acknowledged 2586-2589, 2585 still in a micro-batch, or cleared
  from a stream's queue by a stop or rebalance without a trace -> commits 2590 (seen in a
  restarted worker's log: committed 150, then 1028, with 150 never processed); with no commit
  yet, Faust commits from whatever offset was acknowledged first;
- when a seek races a fetch (a restarted worker seeks to the committed offsets while a fetch is
  under way), the fetcher sees its read position jump, records the offsets in between as a
  "gap" (offsets the broker never returns, such as transaction markers), fills them in as if
  done, and drops the records it then fetches below its new read position: seen in the SIGTERM
  test, a restarted worker filled in 101-117 while 116 was not processed.

Besides, after such a race Faust's list holds offsets twice (acknowledged, and filled in), and its
consecutive-run search then commits one offset per commit interval.

``CommitGuard`` wraps the consumer's ``_new_offset`` (where Faust turns acknowledgements into a
commit offset). The agents ``record`` every batch they processed. Before Faust computes a commit,
its list is cleared of repeats and of what lies below the committed offset; an acknowledged
offset no agent processed is taken back and kept as a hole; every offset Faust would commit over
without an agent having processed it (its "gap" offsets, and the head between the committed
offset, or the partition's first offset, and the first acknowledged one) is looked up on the
broker (``LogProbe``): a record there is a hole too, no record is a real gap. Nothing is
committed past a hole, nor past a message a stream still holds, until it has been processed; a
hole the stream has already passed is read again by seeking the partition back to it (the events
after it are processed again: the engine answers a replayed trigger with the decision it stored,
so nothing is decided or spent twice).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import faust
from confluent_kafka import Consumer, KafkaException, TopicPartition
from faust.types import EventT
from faust.utils.functional import consecutive_numbers

from policies.errors import ConfigError

__all__ = ["VERIFIED_FAUST", "CommitGuard", "LogProbe", "Probe", "check_faust_version"]

VERIFIED_FAUST = "0.15.3"

_LOG = logging.getLogger("nba.worker")
_SEEK_AGAIN_S = 30.0  # a seek back that did not bring the hole in yet is repeated after this


def check_faust_version() -> None:
    """The commit guard and the seek-to-committed fix are verified on one faust-streaming."""
    if faust.__version__ != VERIFIED_FAUST:
        raise ConfigError(
            f"faust-streaming {faust.__version__} is installed; the outcomes agent's commit "
            f"guard is verified on {VERIFIED_FAUST} only (pyproject.toml pins it): install that, "
            "or run tests/stream_app/test_commit_guard.py on the new one and update VERIFIED_FAUST"
        )


class Probe(Protocol):
    def __call__(self, topic: str, partition: int, offsets: Sequence[int]) -> set[int] | None:
        """Which of ``offsets`` hold a record on the broker (None: could not tell now)."""
        ...

    def first_offset(self, topic: str, partition: int) -> int | None:
        """The partition's first offset on the broker (None: could not tell now)."""
        ...


class LogProbe:
    """Looks up offsets of a source partition on the broker with its own consumer (assigned,
    never subscribed, never committing)."""

    def __init__(self, consumer: Consumer, timeout_s: float = 5.0) -> None:
        self._consumer = consumer
        self._timeout_s = timeout_s

    def __call__(self, topic: str, partition: int, offsets: Sequence[int]) -> set[int] | None:
        low, high = min(offsets), max(offsets)
        self._consumer.assign([TopicPartition(topic, partition, low)])
        seen: set[int] = set()
        deadline = time.monotonic() + self._timeout_s
        try:
            while time.monotonic() < deadline:
                for message in self._consumer.consume(high - low + 1, 0.2):
                    # only this partition's: a fetch for the previous lookup may still arrive
                    here = (message.topic(), message.partition()) == (topic, partition)
                    if message.error() is None and here:
                        seen.add(message.offset() or 0)
                if seen and max(seen) >= high:
                    return seen & set(offsets)
            return None  # the broker did not answer up to ``high`` in time
        finally:
            self._consumer.unassign()

    def first_offset(self, topic: str, partition: int) -> int | None:
        try:
            low, _ = self._consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=self._timeout_s
            )
        except KafkaException:
            return None
        return int(low)

    def close(self) -> None:
        self._consumer.close()


class CommitGuard:
    """See the module docstring; unit tests on Faust's real consumer in
    tests/stream_app/test_commit_guard.py."""

    def __init__(self, consumer: Any, sources: frozenset[str], probe: Probe) -> None:
        self._consumer = consumer
        self._sources = sources
        self._probe = probe
        self._processed: dict[Any, set[int]] = defaultdict(set)
        self._holes: dict[Any, set[int]] = defaultdict(set)
        self._gaps: dict[Any, set[int]] = defaultdict(set)  # verified: no record there
        self._sought: dict[Any, tuple[int, float]] = {}
        self._first: dict[Any, int] = {}
        self._faust_new_offset = consumer._new_offset
        consumer._new_offset = self._new_offset

    def record(self, batch: Iterable[EventT[bytes]]) -> None:
        """The agent has processed these events (before Faust acknowledges them)."""
        for event in batch:
            self._processed[event.message.tp].add(event.message.offset)

    def _new_offset(self, tp: Any) -> int | None:
        if tp.topic not in self._sources:
            result: int | None = self._faust_new_offset(tp)
            return result
        self._settle(tp)
        self._take_back_skipped(tp)
        acked = self._consumer._acked[tp]
        if not acked:
            return None
        in_flight = self._in_flight(tp)
        if not self._gaps_checked(tp, min(acked), max(acked), in_flight):
            return None
        self._read_again_if_passed(tp, in_flight)
        if any(o < min(acked) for o in self._holes[tp] | in_flight):
            return None  # a hole or a message a stream still holds lies below the run
        result = self._faust_new_offset(tp)
        if _LOG.isEnabledFor(logging.INFO):  # spare the sort on every commit otherwise
            processed = _ranges(self._processed[tp])
            _LOG.info("commit guard: %s commits up to %s (processed %s)", tp, result, processed)
        return result

    def _settle(self, tp: Any) -> None:
        """Below the committed offset everything is settled (by this worker or another), and an
        offset is acknowledged once."""
        committed = self._consumer._committed_offset[tp]
        floor = committed if committed is not None else -1
        acked = self._consumer._acked[tp]
        acked[:] = sorted({o for o in acked if o >= floor})
        self._consumer._acked_index[tp].intersection_update(acked)
        for kept in (self._processed, self._holes, self._gaps):
            kept[tp] = {o for o in kept[tp] if o >= floor}
        self._holes[tp] -= self._processed[tp]  # missed once, processed since

    def _take_back_skipped(self, tp: Any) -> None:
        processed, gaps = self._processed[tp], self._gaps[tp]
        acked = self._consumer._acked[tp]
        skipped = {o for o in acked if o not in processed and o not in gaps}
        if skipped:
            acked[:] = [o for o in acked if o not in skipped]
            self._consumer._acked_index[tp].difference_update(skipped)
            self._hold(tp, skipped, "acknowledged by Faust, never processed")

    def _gaps_checked(self, tp: Any, first: int, up_to: int, in_flight: set[int]) -> bool:
        """The offsets Faust would commit over without an agent having processed them, looked
        up on the broker: its gap offsets up to ``up_to``, and the head between the committed
        offset and the ``first`` acknowledged one (#606 commits over one such offset, and a
        record cleared from a stream's queue by a stop or rebalance leaves no other trace).
        Records are holes (taken out of Faust's gaps), the rest are real gaps. False when the
        broker could not tell now: no commit this time."""
        start = self._start(tp)
        if start is None:
            return False
        tree = self._consumer._gap[tp]
        known = self._processed[tp] | self._gaps[tp] | self._holes[tp]
        gaps = {o for i in tree.overlap(0, up_to + 1) for o in range(i.begin, i.end)}
        head = set(range(start, first)) - in_flight  # those hold the commit anyway
        unsure = sorted((gaps | head) - known)
        if not unsure:
            return True
        present = self._probe(tp.topic, tp.partition, unsure)
        if present is None:
            return False
        for offset in present:
            tree.chop(offset, offset + 1)
        absent = set(unsure) - present
        self._gaps[tp].update(absent)
        if absent:
            _LOG.info("commit guard: %s offsets %s hold no record: a real gap", tp, _ranges(absent))
        if present:
            self._hold(tp, present, "never processed, and Faust would commit over them")
        return True

    def _start(self, tp: Any) -> int | None:
        """Where the partition's uncommitted offsets begin: the committed offset, or for a
        partition the group never committed, its first offset on the broker."""
        committed: int | None = self._consumer._committed_offset[tp]
        if committed is not None:
            return committed
        if tp not in self._first:
            first = self._probe.first_offset(tp.topic, tp.partition)
            if first is None:
                return None
            self._first[tp] = first
        return self._first[tp]

    def _hold(self, tp: Any, offsets: set[int], why: str) -> None:
        self._holes[tp].update(offsets)
        _LOG.warning(
            "commit guard: %s offsets %s %s; not committed past until processed",
            tp,
            _ranges(offsets),
            why,
        )

    def _read_again_if_passed(self, tp: Any, in_flight: set[int]) -> None:
        """A hole below what the agents already processed will not come by itself: seek back."""
        holes = self._holes[tp]
        if not holes or min(holes) > max(self._processed[tp], default=-1):
            return
        first = min(holes)
        if first in in_flight:
            return  # on its way
        last = self._sought.get(tp)
        if last is not None and last[0] == first and time.monotonic() - last[1] < _SEEK_AGAIN_S:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop running (a stopped worker): the next start reads it
            return
        self._sought[tp] = (first, time.monotonic())
        _LOG.warning("commit guard: %s read again from offset %d", tp, first)
        loop.create_task(self._consumer.seek(tp, first)).add_done_callback(_log_failure)

    def _in_flight(self, tp: Any) -> set[int]:
        """Offsets a stream holds and has not acknowledged yet."""
        return {
            m.offset for m in list(self._consumer._unacked_messages) if m.tp == tp and not m.acked
        }


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _LOG.warning("commit guard: seek back failed: %r", task.exception())


def _ranges(offsets: set[int]) -> str:
    """'3-5, 9' for {3, 4, 5, 9}."""
    runs = consecutive_numbers(sorted(offsets))  # Faust's own, as its commits use it
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)
