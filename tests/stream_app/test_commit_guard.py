"""The worker's commit guard around faust-streaming's consumer, on Faust's real Consumer object
(it is created without connecting: no broker is needed for its offset bookkeeping). Each trap
has a "Faust alone" test showing the upstream behaviour: if one starts to fail, faust-streaming
changed it and the guard can be revisited. The broker lookup (LogProbe) is tested against the
real broker in test_commit_guard_integration.py; here a log is a set of offsets."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from types import SimpleNamespace

import faust
import pytest
from faust.types import TP
from faust.types.tuples import Message

from policies.errors import ConfigError
from stream_app.commit_guard import VERIFIED_FAUST, CommitGuard, check_faust_version

PARTITION = TP("events", 0)


@pytest.fixture
def consumer() -> Iterator[object]:
    loop = asyncio.new_event_loop()  # Faust's services take the current one; closed after
    asyncio.set_event_loop(loop)
    app = faust.App(f"guard-test-{id(loop)}", broker="kafka://localhost:1", loop=loop)
    app.topics._acking_topics.add(PARTITION.topic)  # what subscribing an agent to it does
    yield app.consumer
    app.consumer._thread.thread_loop.close()  # the consumer thread's own loop, never started
    asyncio.set_event_loop(None)
    loop.close()


def _state(consumer: object, committed: int | None, acked: list[int]) -> None:
    consumer._acked[PARTITION] = list(acked)  # type: ignore[attr-defined]
    consumer._acked_index[PARTITION] = set(acked)  # type: ignore[attr-defined]
    consumer._committed_offset[PARTITION] = committed  # type: ignore[attr-defined]


def _message(offset: int) -> Message:
    return Message(PARTITION.topic, PARTITION.partition, offset, 0.0, 0, {}, b"k", b"v", None)


def _in_flight(consumer: object, offset: int) -> Message:
    message = _message(offset)
    consumer._unacked_messages.add(message)  # type: ignore[attr-defined]
    return message  # the caller keeps it alive: Faust holds in-flight messages in a WeakSet


@pytest.mark.parametrize(("committed", "head"), [(2585, 2585), (None, 0)])
def test_faust_alone_commits_over_a_message_still_in_flight(
    consumer: object, committed: int | None, head: int
) -> None:
    """The upstream bug the guard is for (faust-streaming/faust#606): if this starts to fail,
    faust-streaming fixed it and the guard can go."""
    _state(consumer, committed, [head + 1, head + 2, head + 3])
    held = _in_flight(consumer, head)
    assert consumer._new_offset(PARTITION) == head + 4  # type: ignore[attr-defined]
    assert not held.acked


class Log:
    """A partition's offsets that hold a record, and what the guard asked about."""

    def __init__(self, present: set[int], answers: bool = True) -> None:
        self.present = present
        self.answers = answers
        self.asked: list[list[int]] = []

    def __call__(self, topic: str, partition: int, offsets: Sequence[int]) -> set[int] | None:
        self.asked.append(list(offsets))
        return set(offsets) & self.present if self.answers else None

    def first_offset(self, topic: str, partition: int) -> int | None:
        return min(self.present, default=0) if self.answers else None


def _guard(consumer: object, processed: list[int], log: Log | None = None) -> CommitGuard:
    guard = CommitGuard(consumer, frozenset({PARTITION.topic}), log or Log(set()))
    guard.record([SimpleNamespace(message=_message(o)) for o in processed])  # type: ignore[misc]
    return guard


@pytest.mark.parametrize(("committed", "head"), [(2585, 2585), (None, 0)])
def test_the_guard_commits_nothing_past_an_in_flight_head_until_it_is_acked(
    consumer: object, committed: int | None, head: int
) -> None:
    guard = _guard(consumer, [head + 1, head + 2, head + 3])
    _state(consumer, committed, [head + 1, head + 2, head + 3])
    held = _in_flight(consumer, head)
    assert consumer._new_offset(PARTITION) is None  # type: ignore[attr-defined]
    guard.record([SimpleNamespace(message=held)])  # type: ignore[list-item]
    assert consumer.ack(held)  # type: ignore[attr-defined]
    assert consumer._new_offset(PARTITION) == head + 4  # type: ignore[attr-defined]


def test_faust_alone_commits_a_message_its_stream_skipped(consumer: object) -> None:
    """The other upstream behaviour: a stream that skips a message (flow control suspended
    during a stop or rebalance, or an older generation) acknowledges it, and Faust commits it."""
    _state(consumer, 100, [100, 101])
    skipped = _in_flight(consumer, 102)
    assert consumer.ack(skipped)  # type: ignore[attr-defined]  # what faust/streams.py does
    assert consumer._new_offset(PARTITION) == 103  # type: ignore[attr-defined]


def test_the_guard_keeps_a_skipped_message_uncommitted_until_it_is_processed(
    consumer: object,
) -> None:
    guard = _guard(consumer, [100, 101, 103])
    _state(consumer, 100, [100, 101, 103])
    skipped = _in_flight(consumer, 102)
    assert consumer.ack(skipped)  # type: ignore[attr-defined]
    assert consumer._new_offset(PARTITION) == 102  # type: ignore[attr-defined]  # up to the skip
    consumer._committed_offset[PARTITION] = 102  # type: ignore[attr-defined]  # Faust's commit
    assert consumer._new_offset(PARTITION) is None  # type: ignore[attr-defined]  # not over it
    again = _message(102)  # Faust seeks back to the committed offset: the event comes again
    guard.record([SimpleNamespace(message=again)])  # type: ignore[list-item]
    assert consumer.ack(again)  # type: ignore[attr-defined]
    assert consumer._new_offset(PARTITION) == 104  # type: ignore[attr-defined]


def test_a_hole_another_worker_has_committed_since_blocks_nothing(consumer: object) -> None:
    guard = _guard(consumer, [])
    _state(consumer, 100, [])
    assert consumer.ack(_in_flight(consumer, 100))  # type: ignore[attr-defined]  # skipped
    assert consumer._new_offset(PARTITION) is None  # type: ignore[attr-defined]
    _state(consumer, 500, [500, 501])  # revoked, assigned back: the group is at 500 now
    guard.record([SimpleNamespace(message=_message(o)) for o in (500, 501)])  # type: ignore[misc]
    assert consumer._new_offset(PARTITION) == 502  # type: ignore[attr-defined]


def test_the_guard_leaves_ordinary_commits_and_other_topics_alone(consumer: object) -> None:
    _guard(consumer, [10, 11, 12, 14])
    _state(consumer, 10, [10, 11, 12, 14])
    later = _in_flight(consumer, 15)  # in flight above the acknowledged run: no reason to wait
    assert consumer._new_offset(PARTITION) == 13  # type: ignore[attr-defined]
    assert not later.acked
    changelog = TP("changelog", 0)  # not a source: Faust's own rules, nothing recorded needed
    consumer._acked[changelog] = [0, 1]  # type: ignore[attr-defined]
    consumer._acked_index[changelog] = {0, 1}  # type: ignore[attr-defined]
    assert consumer._new_offset(changelog) == 2  # type: ignore[attr-defined]


def test_faust_alone_commits_one_offset_per_interval_when_its_list_repeats_offsets(
    consumer: object,
) -> None:
    """Seen after a restart under load: a seek raced a fetch, the same offsets were
    acknowledged and filled in as a gap, and Faust's consecutive-run search stops at the first
    repeat."""
    _state(consumer, 115, [115, 115, 116, 116, 117, 117])
    assert consumer._new_offset(PARTITION) == 116  # type: ignore[attr-defined]


def test_the_guard_commits_a_repeated_list_in_one_go(consumer: object) -> None:
    _guard(consumer, [115, 116, 117])
    _state(consumer, 115, [114, 115, 115, 116, 116, 117, 117])  # 114: committed already
    assert consumer._new_offset(PARTITION) == 118  # type: ignore[attr-defined]


def test_offsets_faust_takes_for_a_gap_are_not_skipped_events(consumer: object) -> None:
    """Compaction or transaction markers leave offsets no stream ever sees: Faust fills them in
    (here 103-104, left in its list after the first commit), the broker has no record there,
    and the guard must not wait for them."""
    log = Log(set())
    guard = _guard(consumer, [100, 102, 105], log)
    _state(consumer, 100, [100, 102, 105])
    consumer._gap[PARTITION].addi(103, 105)  # type: ignore[attr-defined]  # as _add_gap does
    assert consumer._new_offset(PARTITION) == 101  # type: ignore[attr-defined]
    consumer._committed_offset[PARTITION] = 101  # type: ignore[attr-defined]
    late = _in_flight(consumer, 101)
    guard.record([SimpleNamespace(message=late)])  # type: ignore[list-item]
    assert consumer.ack(late)  # type: ignore[attr-defined]
    assert consumer._new_offset(PARTITION) == 106  # type: ignore[attr-defined]
    assert log.asked == [[103, 104]]  # looked up once


def _gap_over_a_record(consumer: object) -> None:
    """After a seek raced a fetch: 101 and 103 processed and acknowledged, 102 never (dropped
    below the fetcher's read position), and 101-103 taken for a gap."""
    _state(consumer, 100, [100, 101, 103])
    consumer._gap[PARTITION].addi(101, 104)  # type: ignore[attr-defined]


def _commits(consumer: object, times: int) -> list[int | None]:
    """What successive commits compute, each moving Faust's committed offset as it does."""
    offsets = []
    for _ in range(times):
        offset = consumer._new_offset(PARTITION)  # type: ignore[attr-defined]
        if offset is not None:
            consumer._committed_offset[PARTITION] = offset  # type: ignore[attr-defined]
        offsets.append(offset)
    return offsets


def test_faust_alone_commits_over_a_gap_that_holds_a_record(consumer: object) -> None:
    _gap_over_a_record(consumer)
    assert _commits(consumer, 2) == [102, 104]  # 102 was never processed


def test_the_guard_does_not_commit_over_a_record_faust_took_for_a_gap(consumer: object) -> None:
    guard = _guard(consumer, [100, 101, 103], Log({100, 101, 102, 103}))
    _gap_over_a_record(consumer)
    assert _commits(consumer, 2) == [102, None]
    again = _message(102)  # read again
    guard.record([SimpleNamespace(message=again)])  # type: ignore[list-item]
    assert consumer.ack(again)  # type: ignore[attr-defined]
    assert _commits(consumer, 1) == [104]


def test_no_commit_while_the_broker_cannot_tell_whether_a_gap_holds_records(
    consumer: object,
) -> None:
    log = Log({102}, answers=False)
    _guard(consumer, [100, 101, 103], log)
    _gap_over_a_record(consumer)
    assert _commits(consumer, 1) == [None]
    log.answers = True
    assert _commits(consumer, 2) == [102, None]
    assert log.asked == [[102], [102]]


def test_a_hole_the_stream_has_passed_is_read_again(consumer: object) -> None:
    """Nothing would bring 102 again before the next assignment: the guard seeks back to it,
    once per interval (recorded here: the consumer is not connected)."""
    sought: list[tuple[TP, int]] = []

    async def seek(tp: TP, offset: int) -> None:
        sought.append((tp, offset))

    consumer.seek = seek  # type: ignore[attr-defined]
    _guard(consumer, [100, 101, 103], Log({102}))
    _gap_over_a_record(consumer)

    async def three_commits() -> list[int | None]:
        offsets = _commits(consumer, 3)
        await asyncio.sleep(0)  # the seek task runs
        return offsets

    assert asyncio.get_event_loop().run_until_complete(three_commits()) == [102, None, None]
    assert sought == [(PARTITION, 102)]


def test_faust_alone_commits_over_a_head_offset_that_left_no_trace(consumer: object) -> None:
    """A record cleared from a stream's queue by a stop or rebalance is neither acknowledged,
    nor in flight, nor a gap: seen in the SIGTERM test, a restarted worker committed 150 and
    then 1028 on a partition whose offset 150 it never processed."""
    _state(consumer, 150, [151, 152, 153])
    assert consumer._new_offset(PARTITION) == 154  # type: ignore[attr-defined]


@pytest.mark.parametrize(("committed", "acked"), [(150, [151, 152, 153]), (None, [1, 2, 3])])
def test_the_guard_holds_a_head_offset_that_holds_a_record(
    consumer: object, committed: int | None, acked: list[int]
) -> None:
    head = acked[0] - 1
    log = Log({head, *acked})  # without a commit, the partition begins at its first record
    guard = _guard(consumer, acked, log)
    _state(consumer, committed, acked)
    assert consumer._new_offset(PARTITION) is None  # type: ignore[attr-defined]
    assert log.asked == [[head]]
    again = _message(head)
    guard.record([SimpleNamespace(message=again)])  # type: ignore[list-item]
    assert consumer.ack(again)  # type: ignore[attr-defined]
    assert consumer._new_offset(PARTITION) == acked[-1] + 1  # type: ignore[attr-defined]


def test_a_head_offset_without_a_record_is_a_real_gap(consumer: object) -> None:
    """A transaction's commit marker right at the committed offset: nothing to wait for."""
    log = Log({151, 152})
    _guard(consumer, [151, 152], log)
    _state(consumer, 150, [151, 152])
    assert consumer._new_offset(PARTITION) == 153  # type: ignore[attr-defined]
    assert log.asked == [[150]]


def test_the_guard_runs_only_on_the_faust_it_was_verified_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Upgrading faust-streaming fails here first: re-run this file on the new version (the
    tests above exercise every private attribute the guard uses), then update VERIFIED_FAUST."""
    assert faust.__version__ == VERIFIED_FAUST
    check_faust_version()
    monkeypatch.setattr(faust, "__version__", "0.16.0")
    with pytest.raises(ConfigError, match="verified on 0.15.3 only"):
        check_faust_version()
