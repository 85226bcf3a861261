"""The live outcome feed: realized outcomes counted per arm and action, joined by action_id.

Each outcome message is parsed (unreadable ones are counted, not fatal), joined to the stored
decision (`nba:decision:{action_id}`, written by the engine before it publishes) and counted
once in the Redis hash ``nba:outcome-counts:{<outcomes topic>}`` under ``arm|action|outcome_type``;
outcomes of unknown actions count as ``unmatched|-|outcome_type``. A redelivered message (at
least once) is recognised by its (action_id, outcome_type, occurred_at), remembered for 30 days,
and not counted again. The same
counts go to Prometheus (``nba_outcomes_total``). `nba experiment report` does the full
statistics from the topics; this is the running tally an SRE or a dashboard watches.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from pydantic import ValidationError

from stream_app.messages import Outcome
from stream_app.metrics import EngineMetrics
from stream_app.redis_clients import RedisClient, hash_tag, lua_script, read_many

__all__ = ["OutcomeFeed"]

_SEEN_TTL_S = 30 * 86_400
# Count once: remember the outcome's identity, and count only if it was not seen before.
_COUNT_ONCE = """
if redis.call('SET', KEYS[1], 1, 'NX', 'EX', ARGV[2]) then
  return redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
end
return 0
"""


class OutcomeFeed:
    def __init__(
        self, client: RedisClient, topic: str, metrics: EngineMetrics | None = None
    ) -> None:
        self._client = client
        # One script touches both: one hash tag per topic (Redis Cluster: one slot).
        self.counts_key = f"nba:outcome-counts:{hash_tag(topic)}"
        self._seen = f"nba:outcome-seen:{hash_tag(topic)}:"
        self._metrics = metrics
        self._count_once = lua_script(client, _COUNT_ONCE)
        self.unreadable = 0

    def count(self, values: Sequence[bytes | None]) -> int:
        """Count a batch of outcome messages; returns how many were new."""
        outcomes = []
        for value in values:
            try:
                outcomes.append(Outcome.model_validate_json(value or b""))
            except ValidationError:
                self.unreadable += 1
        ids = [o.action_id for o in outcomes]
        keys = [f"nba:decision:{i}" for i in ids if i]
        stored = iter(read_many(self._client, [keys])[0])
        new = 0
        for outcome in outcomes:
            decision = next(stored) if outcome.action_id else None
            arm, action = ("unmatched", "-")
            if decision is not None:
                payload = json.loads(decision)
                arm, action = payload["arm"], payload["action"]
            identity = (
                f"{outcome.action_id}|{outcome.outcome_type}|{outcome.occurred_at.isoformat()}"
            )
            field = f"{arm}|{action}|{outcome.outcome_type}"
            keys = [self._seen + identity, self.counts_key]
            if self._count_once(keys=keys, args=[field, _SEEN_TTL_S]):
                new += 1
                if self._metrics is not None:
                    self._metrics.outcomes.labels(
                        arm=arm, action=action, outcome_type=outcome.outcome_type
                    ).inc()
        return new

    def counts(self) -> dict[str, int]:
        raw: dict[bytes, bytes] = self._client.hgetall(self.counts_key)  # type: ignore[assignment]  # sync client
        return {k.decode(): int(v) for k, v in raw.items()}
