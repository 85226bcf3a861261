"""Streaming aggregates: short windows as of the newest event, order-independent, bounded."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from stream_app.aggregates import MAX_EVENTS, updated, windows
from stream_app.messages import EngagementEvent

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _event(k: int, minutes: float, kind: str = "login", feature: str | None = None):  # type: ignore[no-untyped-def]
    return EngagementEvent(
        event_id=f"e{k}",
        customer_id="C1",
        event_type=kind,
        occurred_at=T0 + timedelta(minutes=minutes),
        properties={"feature": feature} if feature else {},
    )


def test_windows_count_what_happened_before_the_newest_event() -> None:
    events = [
        _event(1, -8 * 24 * 60),  # 8 days before: pruned
        _event(2, -3 * 24 * 60, "feature_used", "reports"),
        _event(3, -5 * 60, "feature_used", "exports"),
        _event(4, -30, "feature_used", "reports"),
        _event(5, 0),
    ]
    state = updated(None, list(enumerate(events)))
    assert windows(state) == {
        "events_1h": 2,
        "events_24h": 3,
        "events_7d": 4,
        "distinct_features_7d": 2,
    }
    assert len(state["times"]) == 4


def test_batches_in_offset_order_give_the_state_of_all_at_once() -> None:
    """Kafka delivers a partition in offset order; within a batch the order does not matter."""
    events = [
        _event(k, random.Random(k).uniform(-9000, 0), "feature_used", f"f{k % 7}")
        for k in range(300)
    ]
    numbered = list(enumerate(events))
    whole = updated(None, numbered)
    state = None
    for start in range(0, 300, 37):
        batch = numbered[start : start + 37]
        random.Random(start).shuffle(batch)
        state = updated(state, batch)
    assert state == whole


def test_a_runaway_producer_cannot_grow_the_state_without_bound() -> None:
    state = updated(None, [(k, _event(k, k / 100)) for k in range(MAX_EVENTS + 500)])
    assert len(state["times"]) == MAX_EVENTS
    assert windows(state)["events_1h"] == MAX_EVENTS


def test_a_redelivered_event_is_not_counted_twice() -> None:
    numbered = [(k, _event(k, k)) for k in range(10)]
    once = updated(None, numbered)
    again = updated(once, numbered[5:])  # a batch delivered again after a crash
    assert again == once and windows(again)["events_1h"] == 10
    later = updated(once, [(10, _event(10, 11))])
    assert windows(later)["events_24h"] == 11


def test_the_same_record_twice_in_one_batch_counts_once() -> None:
    """Seen through Faust: after a restart the first batch held offset 525 twice (the consumer
    re-seeks to the committed offset while a fetch of it is already buffered)."""
    numbered = [(k, _event(k, k)) for k in range(10)]
    once = updated(None, numbered)
    later = (10, _event(10, 11))
    assert updated(once, [later, later]) == updated(once, [later])
    assert windows(updated(None, [*numbered, *numbered]))["events_1h"] == 10
