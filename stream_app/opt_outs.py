"""Consent withdrawn on the stream (``OptOutStore``): a project's declared opt-out events (e.g.
``unsubscribe: [email]``) take a channel away from a customer in the micro-batch that carries
them, before any of its decisions.

The withdrawals live in Redis, apart from the feature store, under the project's name
(``nba:optout:<project>:<customer>``, one hash field per channel holding the first opt-out's
event time): a later batch load of the profile, whose consent column may still say yes, cannot
bring a channel back, and neither can a new consumer group. They never expire; restoring a
channel is a data-team decision made at the source, followed by deleting the field.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from policies.catalog import CHANNELS
from stream_app.messages import EngagementEvent
from stream_app.redis_clients import RedisClient

__all__ = ["OptOutStore"]


class OptOutStore:
    def __init__(
        self, client: RedisClient, project: str, opt_outs: dict[str, tuple[str, ...]]
    ) -> None:
        self._client = client
        self._prefix = f"nba:optout:{project}:"
        self._opt_outs = opt_outs

    def apply(self, events: Iterable[EngagementEvent]) -> int:
        """Record the opt-outs among ``events``; returns how many events withdrew consent."""
        withdrawing = [e for e in events if e.event_type in self._opt_outs]
        if not withdrawing:
            return 0
        with self._client.pipeline(transaction=False) as pipe:
            for event in withdrawing:
                for channel in self._opt_outs[event.event_type]:
                    pipe.hsetnx(
                        self._prefix + event.customer_id, channel, event.occurred_at.isoformat()
                    )
            pipe.execute()
        return len(withdrawing)

    def queue_revoked(self, pipe: Any, customers: Sequence[str]) -> None:
        """The reads of the customers' withdrawn channels, queued in the caller's pipeline:
        one reply per customer, which ``revoked_of`` reads."""
        for customer in customers:
            pipe.hmget(self._prefix + customer, list(CHANNELS))

    def revoked_of(
        self, customers: Sequence[str], rows: Sequence[Sequence[bytes | None]]
    ) -> NDArray[np.bool_]:
        """[customer, channel] in CHANNELS order: True where consent was withdrawn."""
        return np.array([[value is not None for value in row] for row in rows], dtype=bool).reshape(
            len(customers), len(CHANNELS)
        )
