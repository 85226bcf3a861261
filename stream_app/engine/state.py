"""The engine's shared state in Redis, seen by every worker of the group: each customer's last
trigger (for the minimum interval between decisions) and every published decision by action_id
(a replayed trigger republishes the stored decision, never a new one)."""

from __future__ import annotations

import redis

from stream_app.messages import EngagementEvent

__all__ = ["DECISION_TTL_S", "DecisionState"]

DECISION_TTL_S = 14 * 86_400
# Per events topic: engines (or tests) reading other topics never share trigger state.
_LAST_TRIGGER_KEY = "nba:last-trigger:{topic}"


def _decision_key(action_id: str) -> str:
    return f"nba:decision:{action_id}"


class DecisionState:
    def __init__(self, client: redis.Redis, events_topic: str) -> None:
        self._redis = client
        self._trigger_key = _LAST_TRIGGER_KEY.format(topic=events_topic)

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

    def stored_decisions(self, action_ids: list[str]) -> list[bytes | None]:
        """The published payload of each action_id, None where none was stored."""
        if not action_ids:
            return []
        found: list[bytes | None] = self._redis.mget([_decision_key(i) for i in action_ids])  # type: ignore[assignment]  # sync client
        return found

    def store_decision(self, action_id: str, payload: bytes) -> None:
        """First write wins: a decision, once stored, is what every replay republishes."""
        self._redis.set(_decision_key(action_id), payload, ex=DECISION_TTL_S, nx=True)

    def forget_decision(self, action_id: str) -> None:
        """Undo a decision the broker refused, so that its replay decides afresh."""
        self._redis.delete(_decision_key(action_id))

    def answers(self) -> bool:
        try:
            return bool(self._redis.ping())
        except redis.RedisError:
            return False
