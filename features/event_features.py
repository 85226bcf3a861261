"""Event-derived features, computed in batch from the events table, point in time.

A project declares each feature once (``event_features`` in the project file): an event type,
an aggregate (``count``, ``sum`` or ``distinct`` of a property, or ``recency``: hours since the
last such event) and a trailing window from 1 h to 90 d. This module is the batch executor of
those declarations: for each (customer, time t) asked for, it aggregates the customer's events
of that type with ``t - window <= occurred_at < t`` (event time; an event at exactly t is not yet
known at t). Events are de-duplicated by ``event_id`` first, so a re-sent event counts once.
A customer without any such event in the window gets 0 (``count``, ``sum``, ``distinct``) or
the window's length in hours (``recency``: "not within the window").

Two executors of the one definition: ``event_features`` for tables (the batch job, training),
``customer_event_features`` for one customer's stored events at one time (the stream, at each
decision: pandas' merge and group-by cost ~1.5 ms per feature whatever the size, so a batch of
one trigger paid ~4 ms for four features). Tests compare the two on random event logs, and
a worker's features against the batch job's on a simulated stream.

Why not featuretools (its DFS with cutoff times computes the same windows): it brings its own
entity-set model and a large dependency tree for what is here one merge and one groupby per
feature, and the stream's executor must follow these exact semantics event by event.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ingest.project import EventFeature
from policies.errors import SchemaError

__all__ = ["StoredEvent", "customer_event_features", "event_features", "mismatches"]

_US_PER_HOUR = 3_600_000_000


def _one(events: pd.DataFrame, asked: pd.DataFrame, feature: EventFeature) -> pd.Series:
    """One feature for each row of ``asked`` (customer_id, at), aligned on its index."""
    mine = events.loc[events["event_type"] == feature.event_type]
    prop = feature.event_property or "occurred_at"  # count and recency read no property
    if prop not in mine:
        raise SchemaError(
            f"event feature {feature.name!r} reads property {prop!r}, "
            "which the events table does not have"
        )
    columns = list(dict.fromkeys(["customer_id", "occurred_at", prop]))
    pairs = asked.reset_index(names="row").merge(mine[columns], on="customer_id", how="inner")
    inside = (pairs["occurred_at"] < pairs["at"]) & (
        pairs["occurred_at"] >= pairs["at"] - feature.span
    )
    pairs = pairs.loc[inside]
    grouped = pairs.groupby("row")
    window_hours = feature.span / pd.Timedelta(hours=1)
    values: pd.Series
    if feature.aggregate == "count":
        values, empty = grouped.size(), 0.0
    elif feature.aggregate == "sum":
        values, empty = grouped[prop].sum(), 0.0
    elif feature.aggregate == "distinct":
        values, empty = grouped[prop].nunique(), 0.0
    else:
        last = grouped["occurred_at"].max()
        at = asked["at"].reindex(last.index)
        values, empty = (at - last).dt.total_seconds() / 3600.0, window_hours
    return values.reindex(asked.index).astype(float).fillna(empty).rename(feature.name)


def event_features(
    events: pd.DataFrame, asked: pd.DataFrame, declared: tuple[EventFeature, ...]
) -> pd.DataFrame:
    """``asked``: customer_id and ``at`` (UTC times) per row; returns one column per declared
    feature, aligned on ``asked``'s index."""
    if "at" not in asked or "customer_id" not in asked:
        raise SchemaError("event features are asked for (customer_id, at) rows")
    unique = events.drop_duplicates("event_id") if "event_id" in events else events
    columns = [_one(unique, asked, feature) for feature in declared]
    if not columns:
        return pd.DataFrame(index=asked.index)
    return pd.concat(columns, axis=1).astype(np.float64)


@dataclass(frozen=True)
class StoredEvent:
    """One event as the stream keeps it: its time in microseconds since the epoch (exact)."""

    event_id: str
    event_type: str
    us: int
    properties: dict[str, Any]


def _present(value: Any) -> bool:
    """What pandas counts: neither None nor NaN."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def customer_event_features(
    events: Iterable[StoredEvent], at_us: int, declared: tuple[EventFeature, ...]
) -> dict[str, float]:
    """The declared features of one customer at ``at_us`` (microseconds since the epoch) from
    that customer's events: ``event_features``' rules, row by row (first copy of an event_id
    kept; ``t - window <= occurred_at < t``; blanks skipped by sum and distinct)."""
    unique: dict[str, StoredEvent] = {}
    for event in events:
        unique.setdefault(event.event_id, event)
    values: dict[str, float] = {}
    for feature in declared:
        span_us = feature.span // pd.Timedelta(microseconds=1)
        inside = [
            e
            for e in unique.values()
            if e.event_type == feature.event_type and at_us - span_us <= e.us < at_us
        ]
        if feature.aggregate == "count":
            values[feature.name] = float(len(inside))
            continue
        if feature.aggregate == "recency":
            last = max((e.us for e in inside), default=None)
            hours = (at_us - last if last is not None else span_us) / _US_PER_HOUR
            values[feature.name] = float(hours)
            continue
        prop = feature.event_property or ""
        present = [e.properties[prop] for e in inside if _present(e.properties.get(prop))]
        total = math.fsum(present) if feature.aggregate == "sum" else len(set(present))
        values[feature.name] = float(total)
    return values


def mismatches(
    served: pd.DataFrame,
    events: pd.DataFrame,
    asked: pd.DataFrame,
    declared: tuple[EventFeature, ...],
    tolerance: float = 1e-9,
) -> int:
    """How many (customer, feature) values a server holds (``served``, one row per ``asked``
    row, in order) differ from this batch executor's on ``events`` at the asked times: the
    parity check of the stream's executor."""
    names = [f.name for f in declared]
    batch = event_features(events, asked, declared)
    differ = ~np.isclose(
        served[names].to_numpy(np.float64), batch[names].to_numpy(np.float64), atol=tolerance
    )
    return int(differ.sum())
