"""The stream's executor of a project's declared event features (``EventWindowStore``).

One definition, two executors (features/event_features.py): the batch job computes the
project's ``event_features`` from the events table; a worker keeps each customer's recent events
in Redis and computes the same features from them, customer by customer, at the time it decides
(``customer_event_features``, the batch rules row by row, compared with the batch executor in
tests): trailing windows in event time, an event at the asked time not yet known, a re-sent
event counted once.

State: one sorted set per customer (``nba:evwin:<group>:<customer>``), scored by event time,
each member the event's canonical JSON (event_id, type, time, the declared properties), so the
same event added twice, from a redelivered batch or a re-sent message, is one member. Events
older than the longest declared window before the customer's newest event are trimmed; a late
event still inside the window is kept (windows are computed at read time, in event time); one
older than that can no longer count in any window and is dropped. Keys expire after the longest
window plus a day without events.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from features.event_features import StoredEvent, customer_event_features
from ingest.project import EventFeature
from stream_app.messages import EngagementEvent
from stream_app.redis_clients import RedisClient

__all__ = ["EventWindowStore"]

_DAY_S = 86_400
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class EventWindowStore:
    def __init__(
        self,
        client: RedisClient,
        group: str,
        declared: tuple[EventFeature, ...],
        properties: Sequence[str] = (),
    ) -> None:
        self._client = client
        self._prefix = f"nba:evwin:{group}:"
        self.declared = declared
        self._properties = tuple(properties)
        self._types = {f.event_type for f in declared}
        self._horizon_s = max((f.span.total_seconds() for f in declared), default=0.0)

    def _member(self, event: EngagementEvent) -> bytes:
        kept = {p: event.properties.get(p) for p in self._properties if p in event.properties}
        record = {
            "id": event.event_id,
            "type": event.event_type,
            "us": (event.occurred_at - _EPOCH) // _MICROSECOND,  # exact, unlike a float
            "p": kept,
        }
        return json.dumps(record, sort_keys=True, separators=(",", ":")).encode()

    def add(self, events: Iterable[EngagementEvent]) -> None:
        """Keep the events the declared features read (one pipeline for the batch)."""
        by_customer: dict[str, list[EngagementEvent]] = defaultdict(list)
        for event in events:
            if event.event_type in self._types:
                by_customer[event.customer_id].append(event)
        if not by_customer:
            return
        with self._client.pipeline(transaction=False) as pipe:
            for customer, mine in by_customer.items():
                key = self._prefix + customer
                pipe.zadd(key, {self._member(e): e.occurred_at.timestamp() for e in mine})
                newest = max(e.occurred_at.timestamp() for e in mine)
                pipe.zremrangebyscore(key, "-inf", f"({newest - self._horizon_s}")
                pipe.expire(key, int(self._horizon_s) + _DAY_S)
            pipe.execute()

    def queue_stored(self, pipe: Any, customers: Sequence[str], times: Sequence[datetime]) -> None:
        """The reads of each customer's kept events that may count at its time, queued in the
        caller's pipeline: one reply per customer, which ``stored_of`` reads."""
        for customer, when in zip(customers, times, strict=True):
            low, high = when.timestamp() - self._horizon_s, f"({when.timestamp()}"
            pipe.zrangebyscore(self._prefix + customer, low, high)

    @staticmethod
    def stored_of(replies: Sequence[Sequence[bytes]]) -> list[list[StoredEvent]]:
        return [[_stored(member) for member in members] for members in replies]

    def stored(
        self, customers: Sequence[str], times: Sequence[datetime]
    ) -> list[list[StoredEvent]]:
        """Each customer's kept events that may count at its time (one pipeline)."""
        with self._client.pipeline(transaction=False) as pipe:
            self.queue_stored(pipe, customers, times)
            return self.stored_of(pipe.execute())

    def computed(
        self, times: Sequence[datetime], stored: Sequence[Sequence[StoredEvent]]
    ) -> list[dict[str, float]]:
        """The declared features of each customer at its time from its ``stored`` events, by
        the stream's executor of the batch job's definition (features.event_features)."""
        return [
            customer_event_features(events, (when - _EPOCH) // _MICROSECOND, self.declared)
            for when, events in zip(times, stored, strict=True)
        ]

    def rows(
        self, customers: Sequence[str], at: datetime | Sequence[datetime]
    ) -> list[dict[str, float]]:
        """The declared features of each customer as of ``at`` (one time, or one per customer:
        each trigger's own), in order."""
        times = [at] * len(customers) if isinstance(at, datetime) else list(at)
        return self.computed(times, self.stored(customers, times))

    def features(self, customers: Sequence[str], at: datetime | Sequence[datetime]) -> pd.DataFrame:
        """``rows`` as a frame, one column per declared feature."""
        names = [f.name for f in self.declared]
        return pd.DataFrame(self.rows(customers, at), columns=names, dtype=float)


def _stored(member: bytes) -> StoredEvent:
    record = json.loads(member)
    return StoredEvent(record["id"], record["type"], record["us"], record["p"])
