"""The engine's shared state in Redis, seen by every worker of the group: each customer's last
trigger (for the minimum interval between decisions), every decision by action_id (a replayed
trigger gets the stored decision, never a new one), and which decisions were committed on the
topic (a replayed or re-sent trigger whose decision was delivered publishes nothing: the CRM
has it)."""

from __future__ import annotations

from collections.abc import Sequence

import redis

from stream_app.messages import EngagementEvent
from stream_app.redis_clients import RedisClient, read_many

__all__ = [
    "DECISION_TTL_S",
    "DecisionState",
    "answered_channel",
    "decision_key",
    "delivered_key",
    "last_trigger_key",
    "latest_key",
    "superseded_key",
]

DECISION_TTL_S = 14 * 86_400
# Per events topic: engines (or tests) reading other topics never share trigger state.
_LAST_TRIGGER_KEY = "nba:last-trigger:{topic}"


def last_trigger_key(events_topic: str) -> str:
    """The hash of each customer's last trigger, "event time|event_id" by customer_id."""
    return _LAST_TRIGGER_KEY.format(topic=events_topic)


def answered_channel(events_topic: str) -> str:
    """Pub/sub channel: after each committed batch, the action_ids whose request now has an
    answer (delivered, or superseded by a delivered decision), so that the HTTP API need not poll.
    """
    return f"nba:answered:{events_topic}"


def superseded_key(action_id: str) -> str:
    """The action_id whose decision answers an HTTP request its batch did not decide."""
    return f"nba:superseded:{action_id}"


def decision_key(action_id: str) -> str:
    return f"nba:decision:{action_id}"


def delivered_key(action_id: str) -> str:
    return f"nba:delivered:{action_id}"


def latest_key(customer_id: str) -> str:
    return f"nba:latest-decision:{customer_id}"


class DecisionState:
    def __init__(self, client: RedisClient, events_topic: str) -> None:
        self._redis = client
        self._trigger_key = last_trigger_key(events_topic)
        self._answered = answered_channel(events_topic)

    def last_triggers(self, customers: set[str]) -> dict[str, tuple[float, str]]:
        """Each customer's last trigger (event time, event_id)."""
        if not customers:
            return {}
        ordered = sorted(customers)
        found: list[bytes | None] = self._redis.hmget(self._trigger_key, ordered)  # type: ignore[assignment]  # sync client
        last = {}
        for customer, value in zip(ordered, found, strict=True):
            if value is not None:
                stamp, event_id = value.decode().split("|", 1)
                last[customer] = (float(stamp), event_id)
        return last

    def remember_triggers(self, triggers: list[EngagementEvent]) -> None:
        mapping = {e.customer_id: f"{e.occurred_at.timestamp()}|{e.event_id}" for e in triggers}
        if mapping:
            self._redis.hset(self._trigger_key, mapping=mapping)

    def mark_superseded(self, winners: dict[str, str]) -> None:
        """Requests left undecided (action_id) and the decision that answers each instead."""
        if not winners:
            return
        with self._redis.pipeline(transaction=False) as pipe:
            for action_id, winner in winners.items():
                pipe.set(superseded_key(action_id), winner, ex=DECISION_TTL_S)
            pipe.execute()

    def lookup(self, action_ids: list[str]) -> list[tuple[bytes | None, bool]]:
        """(stored payload or None, delivered) of each action_id, in one round trip."""
        if not action_ids:
            return []
        payloads, delivered = read_many(
            self._redis,
            [[decision_key(i) for i in action_ids], [delivered_key(i) for i in action_ids]],
        )
        return [(p, d is not None) for p, d in zip(payloads, delivered, strict=True)]

    def mark_delivered(self, action_ids: list[str], superseded: Sequence[str] = ()) -> None:
        """These decisions' transaction is committed: every read_committed reader has them.
        Their ids and those of the ``superseded`` requests are announced on `answered_channel`
        (fire and forget: a listener that misses it finds the marks on its next look)."""
        if not action_ids and not superseded:
            return
        with self._redis.pipeline(transaction=False) as pipe:
            for action_id in action_ids:
                pipe.set(delivered_key(action_id), b"1", ex=DECISION_TTL_S)
            pipe.execute()
        # After the marks, outside the pipeline: a cluster's pipeline carries no PUBLISH.
        self._redis.publish(self._answered, " ".join([*action_ids, *superseded]))

    def store_decision(
        self, action_id: str, payload: bytes, customer_id: str | None = None
    ) -> None:
        """First write wins: a decision, once stored, is what every replay republishes. With
        ``customer_id``, it also becomes that customer's latest decision (``latest``)."""
        self.store_decisions([(action_id, payload, customer_id)])

    def store_decisions(self, decisions: Sequence[tuple[str, bytes, str | None]]) -> None:
        """``store_decision`` for each (action_id, payload, customer_id), in one round trip."""
        if not decisions:
            return
        with self._redis.pipeline(transaction=False) as pipe:
            for action_id, payload, customer_id in decisions:
                pipe.set(decision_key(action_id), payload, ex=DECISION_TTL_S, nx=True)
                if customer_id is not None:
                    pipe.set(latest_key(customer_id), action_id, ex=DECISION_TTL_S)
            pipe.execute()

    def latest(self, customer_id: str) -> tuple[bytes | None, bool]:
        """The customer's latest decision (stored payload or None, delivered)."""
        action_id: bytes | None = self._redis.get(latest_key(customer_id))  # type: ignore[assignment]  # sync client
        if action_id is None:
            return None, False
        return self.lookup([action_id.decode()])[0]

    def replace_decision(self, action_id: str, payload: bytes) -> None:
        """Overwrite a stored decision no reader has seen (its transaction never committed)."""
        self._redis.set(decision_key(action_id), payload, ex=DECISION_TTL_S)

    def answers(self) -> bool:
        try:
            return bool(self._redis.ping())
        except redis.RedisError:
            return False
