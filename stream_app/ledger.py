"""The budget ledger in Redis: atomic reservations per period, keyed by action_id.

One Lua script checks and records a reservation in a single step, so any number of workers
share one budget and one capacity per action without ever overspending. A reservation is keyed
by ``action_id``: a replayed trigger finds its reservation and reuses it instead of spending
twice. Reserve before publishing; release if the publish fails.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from policies.errors import BudgetError

__all__ = ["BudgetLedger", "Reservation"]

# KEYS: 1 spent (float), 2 reservations (hash action_id -> "action|cost"), 3 counts per action
# ARGV: 1 action_id, 2 action, 3 cost, 4 budget, 5 capacity (-1: unlimited)
_RESERVE = """
local existing = redis.call('HGET', KEYS[2], ARGV[1])
if existing then return {2, existing} end
local cost = tonumber(ARGV[3])
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
if spent + cost > tonumber(ARGV[4]) + 1e-9 then return {0, 'budget'} end
local capacity = tonumber(ARGV[5])
if capacity >= 0 then
  local used = tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '0')
  if used + 1 > capacity then return {0, 'capacity'} end
end
redis.call('INCRBYFLOAT', KEYS[1], ARGV[3])
redis.call('HINCRBY', KEYS[3], ARGV[2], 1)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. '|' .. ARGV[3])
return {1, 'reserved'}
"""
_RELEASE = """
local existing = redis.call('HGET', KEYS[2], ARGV[1])
if not existing then return 0 end
local sep = string.find(existing, '|', 1, true)
local action = string.sub(existing, 1, sep - 1)
local cost = string.sub(existing, sep + 1)
redis.call('INCRBYFLOAT', KEYS[1], '-' .. cost)
redis.call('HINCRBY', KEYS[3], action, -1)
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
"""


@dataclass(frozen=True)
class Reservation:
    granted: bool
    replayed: bool  # the action_id had been reserved before (a replay): nothing new was spent
    reason: str  # "reserved", "replay", "budget" or "capacity"


class BudgetLedger:
    """Spend and per-action counts of one budget period, shared by every worker."""

    def __init__(
        self, client: redis.Redis, period: str, budget: float, prefix: str = "nba:ledger"
    ) -> None:
        if budget < 0:
            raise BudgetError(f"budget must be >= 0, got {budget}")
        self._client = client
        self.period = period
        self.budget = budget
        base = f"{prefix}:{period}"
        self._keys = [f"{base}:spent", f"{base}:reservations", f"{base}:counts"]
        self._reserve = client.register_script(_RESERVE)
        self._release = client.register_script(_RELEASE)

    def reserve(
        self, action_id: str, action: str, cost: float, capacity: float | None = None
    ) -> Reservation:
        if cost < 0:
            raise BudgetError(f"cost must be >= 0, got {cost}")
        cap = -1 if capacity is None or capacity == float("inf") else int(capacity)
        status, detail = self._reserve(
            keys=self._keys, args=[action_id, action, repr(float(cost)), repr(self.budget), cap]
        )
        if int(status) == 2:
            return Reservation(granted=True, replayed=True, reason="replay")
        reason = detail.decode() if isinstance(detail, bytes) else str(detail)
        return Reservation(granted=int(status) == 1, replayed=False, reason=reason)

    def release(self, action_id: str) -> bool:
        """Undo a reservation (its publish failed); False when there was none."""
        return bool(self._release(keys=self._keys, args=[action_id]))

    def spent(self) -> float:
        value: bytes | None = self._client.get(self._keys[0])  # type: ignore[assignment]  # sync client
        return float(value or 0.0)

    def counts(self) -> dict[str, int]:
        raw: dict[bytes, bytes] = self._client.hgetall(self._keys[2])  # type: ignore[assignment]  # sync client
        return {k.decode(): int(v) for k, v in raw.items()}
