"""Event-derived features, computed in batch from the events table, point in time.

A project declares each feature once (``event_features`` in the project file): an event type,
an aggregate (``count``, ``sum`` or ``distinct`` of a property, or ``recency``: hours since the
last such event) and a trailing window from 1 h to 90 d. This module is the batch executor of
those declarations: for each (customer, time t) asked for, it aggregates the customer's events
of that type with ``t - window <= occurred_at < t`` (event time; an event at exactly t is not yet
known at t). Events are de-duplicated by ``event_id`` first, so a re-sent event counts once.
A customer without any such event in the window gets 0 (``count``, ``sum``, ``distinct``) or
the window's length in hours (``recency``: "not within the window").

Why not featuretools (its DFS with cutoff times computes the same windows): it brings its own
entity-set model and a large dependency tree for what is here one merge and one groupby per
feature, and the stream's executor must follow these exact semantics event by event.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ingest.project import EventFeature
from policies.errors import SchemaError

__all__ = ["event_features", "mismatches"]


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
