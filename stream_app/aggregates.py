"""Per-customer streaming aggregates, kept in Redis by the decide path (``ActivityStore``).

A customer's state is a small JSON-able dict: the epoch seconds of their events in the last
7 days (newest last, at most ``MAX_EVENTS``) and, per product feature used, when it was last
used. From it come the `engagement_stream` view's short windows (events in the last 1 h / 24 h
/ 7 d, distinct features used in 7 d), computed as of the customer's newest event, exactly as
`features.jobs.activity_windows` computes them offline. The 30- and 90-day counts of the same
view stay the nightly batch job's (`nba features materialize`): the stream refreshes only the
short windows, written to Feast's online store in the same round trips as the state
(stream_app.feature_store.ViewWriter).

A batch processed again (its transaction aborted, or a crash before the commit) is harmless:
all of a customer's events live in one partition of the events topic, so their offsets only
grow; the state keeps the highest offset applied and skips anything at or below it, and the
same record twice in one batch counts once. (After the events topic gets more partitions,
customers move and offsets stop being comparable: run the workers under a new consumer group,
which keys a new state.)

Why Redis and not a Faust table: the decide path consumes with confluent-kafka in Kafka
transactions (stream_app.decision_loop), so Faust's assignment of table partitions would not
follow it; a customer's state is one Redis key, written by the one worker that owns the
customer's partition, and shared by every worker (ARCHITECTURE: no state in one process only).
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from redis.cluster import RedisCluster

from stream_app.feature_store import ViewWriter
from stream_app.messages import DECISION_REQUESTED, EngagementEvent
from stream_app.pipeline import RawMessage
from stream_app.redis_clients import RedisClient, queue_reads, regroup

__all__ = ["MAX_EVENTS", "WINDOW_FIELDS", "ActivityStore", "WindowRow", "updated", "windows"]

WindowRow = tuple[str, datetime, dict[str, int]]  # customer, as of, {feature: value}

_WEEK_S = 7 * 86_400.0
MAX_EVENTS = 5_000  # a runaway producer must not grow one customer's state without bound
WINDOW_FIELDS = {"events_1h": 3_600.0, "events_24h": 86_400.0, "events_7d": _WEEK_S}
Activity = dict[str, Any]


def updated(state: Activity | None, events: Iterable[tuple[int, EngagementEvent]]) -> Activity:
    """The customer's state after these (offset, event) pairs, in any order, pruned to the last
    7 days; an event at or below the highest offset already applied is a redelivery: skipped."""
    times = list(state["times"]) if state else []
    features = dict(state["features"]) if state else {}
    applied = int(state.get("offset", -1)) if state else -1
    fresh: dict[int, EngagementEvent] = {}
    for offset, event in events:  # the same offset twice in one batch is a redelivery too
        if offset > applied:
            fresh.setdefault(offset, event)
    for event in fresh.values():
        at = event.occurred_at.timestamp()
        times.append(at)
        feature = event.properties.get("feature") if event.event_type == "feature_used" else None
        if isinstance(feature, str):
            features[feature] = max(at, features.get(feature, at))
    times.sort()
    newest = times[-1] if times else 0.0
    return {
        "offset": max([applied, *fresh]),
        "times": times[len(times) - _within(times, newest, _WEEK_S) :][-MAX_EVENTS:],
        "features": {f: t for f, t in features.items() if newest - t <= _WEEK_S},
    }


def windows(state: Activity) -> dict[str, int]:
    """Event counts in the windows ending at the newest event, and distinct features in 7 d."""
    times: list[float] = state["times"]
    newest = times[-1] if times else 0.0
    counts = {name: _within(times, newest, span) for name, span in WINDOW_FIELDS.items()}
    counts["distinct_features_7d"] = sum(newest - t <= _WEEK_S for t in state["features"].values())
    return counts


def _within(times: list[float], newest: float, span: float) -> int:
    """How many of the sorted ``times`` have ``newest - t <= span``: found by bisection (a
    customer's week can hold thousands of events), then settled on that very comparison so
    that float rounding at the edge counts exactly as a plain pass over the list would."""
    first = bisect_left(times, newest - span)
    while first > 0 and newest - times[first - 1] <= span:
        first -= 1
    while first < len(times) and not newest - times[first] <= span:
        first += 1
    return len(times) - first


class ActivityStore:
    """Each customer's state as one JSON value in Redis (``nba:activity:<group>:<customer>``),
    expiring a day after the longest window so that idle customers leave no state behind.

    ``online``: the `engagement_stream` view's writer of the Feast online store (on the same
    Redis): the windows are then written there too, in the same two round trips as the state
    (its stored event times read with the states, its rows written with them)."""

    _TTL_S = int(_WEEK_S) + 86_400

    def __init__(
        self, client: RedisClient, consumer_group: str, online: ViewWriter | None = None
    ) -> None:
        self._redis = client
        self._prefix = f"nba:activity:{consumer_group}:"
        self._online = online

    def apply(self, events: Sequence[tuple[RawMessage, EngagementEvent]]) -> list[WindowRow]:
        """Fold the batch's events into their customers' states; their windows as of now."""
        by_customer: dict[str, list[tuple[int, EngagementEvent]]] = defaultdict(list)
        for raw, event in events:
            if event.event_type != DECISION_REQUESTED:  # a request is not product engagement
                by_customer[event.customer_id].append((raw.offset, event))
        customers = sorted(by_customer)
        if not customers:
            return []
        keys = [[self._prefix + c for c in customers]]
        cluster = isinstance(self._redis, RedisCluster)
        with self._redis.pipeline(transaction=False) as pipe:
            queue_reads(pipe, keys, cluster)
            online_keys = (
                self._online.queue_reads(pipe, customers) if self._online is not None else []
            )
            replies = pipe.execute()
        (stored,) = regroup(replies, keys, cluster)
        rows: list[WindowRow] = []
        with self._redis.pipeline(transaction=False) as pipe:
            for customer, before in zip(customers, stored, strict=True):
                state = updated(json.loads(before) if before else None, by_customer[customer])
                pipe.set(self._prefix + customer, json.dumps(state), ex=self._TTL_S)
                as_of = datetime.fromtimestamp(state["times"][-1], UTC)
                rows.append((customer, as_of, windows(state)))
            if self._online is not None:
                stamps = replies[len(replies) - len(customers) :]
                self._online.queue_writes(pipe, rows, online_keys, stamps)
            pipe.execute()
        return rows
