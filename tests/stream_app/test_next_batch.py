"""The decide loop's batching rule (stream_app.decision_loop.next_batch), on a stand-in for the
consumer's local queue: what has arrived is taken without waiting, and the loop waits only when
nothing has (librdkafka's consume(n, timeout) would hold a quiet stream's records for the
whole timeout). The same loop against a real broker: test_decision_loop_integration.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from confluent_kafka import Consumer, TopicPartition

from stream_app.decision_loop import commit_group, next_batch


@dataclass
class _Record:
    offset: int
    failed: bool = False

    def error(self) -> object | None:
        return "broker error" if self.failed else None


@dataclass
class _Queue:
    """Hands out queued records as librdkafka's consume does; ``arriving`` come in during the
    first wait."""

    queued: list[_Record]
    arriving: list[_Record] = field(default_factory=list)
    calls: list[tuple[int, float]] = field(default_factory=list)
    partitions: list[int] = field(default_factory=lambda: [0, 1])  # of topic "events"

    def consume(self, n: int, timeout: float) -> list[Any]:
        self.calls.append((n, timeout))
        if not self.queued and timeout > 0:
            self.queued, self.arriving = self.arriving, []
        taken, self.queued = self.queued[:n], self.queued[n:]
        return taken

    def consumer_group_metadata(self) -> tuple[str, int]:
        """Stands for the group's metadata after this many reads (a read may meet a
        rebalance, which changes it)."""
        return ("after reads", len(self.calls))

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("events", p) for p in self.partitions]


def _batch(queue: _Queue, size: int = 500, wait_s: float = 0.05) -> list[int]:
    taken: list[Any] = next_batch(cast(Consumer, queue), size, wait_s).messages
    return [m.offset for m in taken]


def test_what_has_arrived_is_taken_without_waiting() -> None:
    queue = _Queue([_Record(i) for i in range(3)])
    assert _batch(queue) == [0, 1, 2]
    assert queue.calls == [(500, 0)]


def test_a_full_batch_leaves_the_rest_for_the_next() -> None:
    queue = _Queue([_Record(i) for i in range(7)])
    assert _batch(queue, size=5) == [0, 1, 2, 3, 4]
    assert _batch(queue, size=5) == [5, 6]


def test_an_idle_loop_waits_for_the_first_record_then_takes_what_came_with_it() -> None:
    queue = _Queue([], arriving=[_Record(10), _Record(11), _Record(12)])
    assert _batch(queue, wait_s=0.2) == [10, 11, 12]
    assert queue.calls == [(500, 0), (1, 0.2), (499, 0)]


def test_nothing_within_the_wait_is_an_empty_batch() -> None:
    queue = _Queue([])
    assert _batch(queue) == []
    assert queue.calls == [(500, 0), (1, 0.05)]


def test_records_carrying_an_error_are_left_out() -> None:
    queue = _Queue([_Record(0), _Record(1, failed=True), _Record(2)])
    assert _batch(queue) == [0, 2]


def test_the_partitions_held_and_the_group_metadata_are_taken_before_the_first_read() -> None:
    queue = _Queue([], arriving=[_Record(10), _Record(11)])
    read = next_batch(cast(Consumer, queue), 500, 0.05)
    assert [m.offset for m in read.messages] == [10, 11]
    assert read.before.held == {("events", 0), ("events", 1)}
    assert read.before.group == ("after reads", 0)


@pytest.mark.parametrize(
    ("held_after", "expected"),
    [
        ([0, 1], ("after reads", 3)),  # nothing taken away: today's metadata
        ([0, 1, 2], ("after reads", 3)),  # a partition given: today's
        ([1], ("after reads", 0)),  # partition 0 taken away: the stale one, which is refused
    ],
    ids=["kept", "given", "taken away"],
)
def test_a_batch_commits_with_stale_metadata_if_a_partition_was_taken_away_meanwhile(
    held_after: list[int], expected: tuple[str, int]
) -> None:
    queue = _Queue([], arriving=[_Record(10)])
    read = next_batch(cast(Consumer, queue), 500, 0.05)
    queue.partitions = held_after
    assert commit_group(cast(Consumer, queue), read.before) == expected


def test_a_first_batch_commits_with_todays_metadata() -> None:
    queue = _Queue([_Record(0)], partitions=[])  # not yet in the group before the read
    read = next_batch(cast(Consumer, queue), 500, 0.05)
    queue.partitions = [0, 1]
    assert commit_group(cast(Consumer, queue), read.before) == ("after reads", 1)
