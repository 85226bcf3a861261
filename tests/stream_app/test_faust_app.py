"""The Faust worker's own logic that needs no server: which records of a batch are new."""

from __future__ import annotations

from stream_app.faust_app import first_deliveries


def test_a_record_delivered_twice_in_a_batch_is_processed_once() -> None:
    """As seen after a restart: the first batch held (partition 0, offset 525) twice."""
    batch = [("p0", 525), ("p0", 525), ("p1", 7)]
    assert first_deliveries(batch, {}) == [0, 2]


def test_records_before_what_this_worker_processed_are_skipped() -> None:
    batch = [("p0", 98), ("p0", 99), ("p0", 100), ("p1", 3)]
    assert first_deliveries(batch, {"p0": 100, "p1": 0}) == [2, 3]
    assert first_deliveries(batch, {"p2": 500}) == [0, 1, 2, 3], "other partitions do not matter"
