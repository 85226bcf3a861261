"""The decide loop's batching rule (stream_app.decision_loop.next_batch), on a stand-in for the
consumer's local queue: what has arrived is taken without waiting, and the loop waits only when
nothing has (librdkafka's consume(n, timeout) would hold a quiet stream's records for the
whole timeout). The same loop against a real broker: test_decision_loop_integration.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from confluent_kafka import Consumer

from stream_app.decision_loop import next_batch


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


@pytest.mark.parametrize(
    ("queued", "arriving", "reads"),
    [([_Record(0), _Record(1)], [], 1), ([], [_Record(10), _Record(11)], 2)],
    ids=["arrived", "waited for"],
)
def test_the_group_metadata_is_taken_as_of_the_first_record_read(
    queued: list[_Record], arriving: list[_Record], reads: int
) -> None:
    """Not after the read that takes what came with the first record: a rebalance met there
    must leave the batch's offsets commit stale (stream_app.decision_loop.Read)."""
    queue = _Queue(queued, arriving)
    read = next_batch(cast(Consumer, queue), 500, 0.05)
    assert len(read.messages) == 2
    assert read.group == ("after reads", reads)
