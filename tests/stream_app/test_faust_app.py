"""The worker's guards around faust-streaming's consumer, on Faust's real Consumer object (it
is created without connecting: no broker is needed for its offset bookkeeping)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import faust
import pytest
from faust.types import TP
from faust.types.tuples import Message

from stream_app.faust_app import _never_commit_past_in_flight

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


def _in_flight(consumer: object, offset: int) -> Message:
    message = Message(PARTITION.topic, PARTITION.partition, offset, 0.0, 0, {}, b"k", b"v", None)
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


@pytest.mark.parametrize(("committed", "head"), [(2585, 2585), (None, 0)])
def test_the_guard_commits_nothing_past_an_in_flight_head_until_it_is_acked(
    consumer: object, committed: int | None, head: int
) -> None:
    _never_commit_past_in_flight(consumer)
    _state(consumer, committed, [head + 1, head + 2, head + 3])
    held = _in_flight(consumer, head)
    assert consumer._new_offset(PARTITION) is None  # type: ignore[attr-defined]
    assert consumer.ack(held)  # type: ignore[attr-defined]
    assert consumer._new_offset(PARTITION) == head + 4  # type: ignore[attr-defined]


def test_the_guard_leaves_ordinary_commits_alone(consumer: object) -> None:
    _never_commit_past_in_flight(consumer)
    _state(consumer, 10, [10, 11, 12, 14])
    later = _in_flight(consumer, 15)  # in flight above the acknowledged run: no reason to wait
    assert consumer._new_offset(PARTITION) == 13  # type: ignore[attr-defined]
    assert not later.acked
