"""The budget ledger in Redis: atomic reservations per period, keyed by action_id.

One Lua script checks and records a reservation in a single step, so any number of workers
share one budget and one capacity per action without ever overspending. A reservation is keyed
by ``action_id``: a replayed trigger finds its reservation and reuses it instead of spending
twice. Reserve before publishing; release if the publish fails.

The ledger knows when it was lost. Each period's ledger carries an epoch, a random token set
when the ledger is created or rebuilt; every worker holds the epoch it opened, and every
reservation checks it in the same script. A flushed or replaced Redis has no epoch (or
another one), so the reservation is refused with ``LedgerLost`` and nothing is spent until the
ledger is rebuilt from `nba-actions`, the durable record (``stream_app.ledger_restore``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis
from numpy.typing import NDArray

from policies.errors import BudgetError, InfraError
from stream_app.redis_clients import RedisClient, hash_tag, lua_script

__all__ = ["BudgetLedger", "LedgerLost", "LedgerState", "Reservation", "ReservationRequest"]


class LedgerLost(InfraError):
    """The ledger's Redis state is gone or was replaced: nothing may be spent until it is rebuilt
    from the published actions."""


# KEYS: 1 spent (float), 2 reservations (hash action_id -> "action|cost"), 3 counts per action,
#       4 epoch
# ARGV: 1 epoch held, 2 budget, then 4 per request: action_id, action, cost, capacity (-1:
#       unlimited). Returns status and detail of each request in turn, or {3, 'lost'}.
# One script call for a whole batch: a Redis Cluster runs no script in a pipeline, and one call
# is one round trip on a single server too.
_RESERVE = """
if redis.call('GET', KEYS[4]) ~= ARGV[1] then return {3, 'lost'} end
local budget = tonumber(ARGV[2])
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
local replies = {}
local function answer(status, detail)
  replies[#replies + 1] = status
  replies[#replies + 1] = detail
end
for i = 3, #ARGV, 4 do
  local action_id, action, cost = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local capacity = tonumber(ARGV[i + 3])
  local existing = redis.call('HGET', KEYS[2], action_id)
  if existing then
    answer(2, existing)
  elseif spent + tonumber(cost) > budget + 1e-9 then
    answer(0, 'budget')
  elseif capacity >= 0 and tonumber(redis.call('HGET', KEYS[3], action) or '0') + 1 > capacity then
    answer(0, 'capacity')
  else
    spent = tonumber(redis.call('INCRBYFLOAT', KEYS[1], cost))
    redis.call('HINCRBY', KEYS[3], action, 1)
    redis.call('HSET', KEYS[2], action_id, action .. '|' .. cost)
    answer(1, 'reserved')
  end
end
return replies
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


# (action_id, action, cost, capacity of the action this period: None or inf for no limit)
ReservationRequest = tuple[str, str, float, float | None]


@dataclass(frozen=True)
class LedgerState:
    """The period's spend, its reservations counted per action, and its stored epoch, read
    together (``BudgetLedger.state``: one round trip where three reads took three)."""

    spent: float
    counts: dict[str, int]
    epoch: str | None

    def capacity_left(
        self, actions: Sequence[str], capacity: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        """Each action's ``capacity`` for the period less what this period's reservations
        counted (every worker's, and batch runs')."""
        used = np.array([self.counts.get(name, 0) for name in actions], dtype=float)
        left: NDArray[np.float64] = np.maximum(capacity - used, 0.0)
        return left


@dataclass(frozen=True)
class Reservation:
    granted: bool
    replayed: bool  # the action_id had been reserved before (a replay): nothing new was spent
    reason: str  # "reserved", "replay", "budget" or "capacity"


class BudgetLedger:
    """Spend and per-action counts of one budget period, shared by every worker."""

    def __init__(
        self, client: RedisClient, period: str, budget: float, prefix: str = "nba:ledger"
    ) -> None:
        if budget < 0:
            raise BudgetError(f"budget must be >= 0, got {budget}")
        self._client = client
        self.period = period
        self.budget = budget
        # One hash tag per period: its script touches all four keys (Redis Cluster: one slot).
        base = f"{prefix}:{hash_tag(period)}"
        self.keys = (f"{base}:spent", f"{base}:reservations", f"{base}:counts", f"{base}:epoch")
        self._reserve = lua_script(client, _RESERVE)
        self._release = lua_script(client, _RELEASE)
        self.epoch: str | None = None

    def stored_epoch(self) -> str | None:
        value: bytes | None = self._client.get(self.keys[3])  # type: ignore[assignment]  # sync client
        return value.decode() if value is not None else None

    def state(self) -> LedgerState:
        """Spend, counts and stored epoch in one pipeline (their keys share a hash slot)."""
        with self._client.pipeline(transaction=False) as pipe:
            pipe.get(self.keys[0])
            pipe.hgetall(self.keys[2])
            pipe.get(self.keys[3])
            spent, counts, epoch = pipe.execute()
        return LedgerState(
            float(spent or 0.0),
            {k.decode(): int(v) for k, v in counts.items()},
            epoch.decode() if epoch is not None else None,
        )

    def checked_state(self) -> LedgerState:
        """``state``, raising LedgerLost when the epoch this worker holds is no longer the
        stored one: a worker that spends nothing for a while still notices a flushed ledger."""
        found = self.state()
        self._check(found.epoch)
        return found

    def _check(self, stored: str | None) -> None:
        if self.epoch is not None and stored != self.epoch:
            raise LedgerLost(
                f"the ledger of period {self.period!r} was lost or replaced (its epoch changed): "
                "rebuild it from the published actions"
            )

    def forget_epoch(self) -> None:
        """Drop the epoch: every worker holding it stops spending and rebuilds (`nba ledger
        rebuild --force`)."""
        self._client.delete(self.keys[3])

    def open(self, create: bool = False) -> str:
        """Hold the period's epoch. A missing one is created only with ``create`` (a ledger
        known to be new: tests, in-process loops); a worker rebuilds it instead (``rebuild``),
        since a missing epoch may mean a lost ledger."""
        if create:
            self._client.set(self.keys[3], uuid.uuid4().hex, nx=True)
        epoch = self.stored_epoch()
        if epoch is None:
            raise LedgerLost(f"the ledger of period {self.period!r} has no epoch: rebuild it")
        self.epoch = epoch
        return epoch

    def rebuild(self, reservations: Iterable[tuple[str, str, float]]) -> bool:
        """Replace the period's ledger by these (action_id, action, cost) reservations and give
        it a new epoch; True when this call rebuilt it. Optimistic (WATCH on the epoch): a worker
        that finds an epoch already there (another rebuilt first, from the same record) adopts
        it and writes nothing."""
        spent = 0.0
        counts: dict[str, int] = {}
        held: dict[str, str] = {}
        for action_id, action, cost in reservations:
            if action_id in held:
                continue
            held[action_id] = f"{action}|{float(cost)!r}"
            spent += float(cost)
            counts[action] = counts.get(action, 0) + 1
        with self._client.pipeline(transaction=True) as pipe:  # WATCH: a cluster needs it said
            try:
                pipe.watch(self.keys[3])
                if pipe.get(self.keys[3]) is None:
                    pipe.multi()
                    pipe.delete(*self.keys[:3])
                    pipe.set(self.keys[0], repr(spent))
                    if held:
                        pipe.hset(self.keys[1], mapping=held)
                        pipe.hset(self.keys[2], mapping=counts)
                    pipe.set(self.keys[3], uuid.uuid4().hex)
                    pipe.execute()
                    rebuilt = True
                else:
                    rebuilt = False
            except redis.WatchError:
                rebuilt = False
        self.open()
        return rebuilt

    def reserve(
        self, action_id: str, action: str, cost: float, capacity: float | None = None
    ) -> Reservation:
        return self.reserve_many([(action_id, action, cost, capacity)])[0]

    def reserve_many(self, requests: Sequence[ReservationRequest]) -> list[Reservation]:
        """Each (action_id, action, cost, capacity) reserved in order, in one round trip: one
        atomic script takes them in turn, so each sees the spend of those before it exactly as
        separate calls would."""
        for _, _, cost, _ in requests:
            if cost < 0:
                raise BudgetError(f"cost must be >= 0, got {cost}")
        if not requests:
            return []
        epoch = self.epoch if self.epoch is not None else self.open(create=True)
        args: list[str | int] = [epoch, repr(self.budget)]
        for action_id, action, cost, capacity in requests:
            cap = -1 if capacity is None or capacity == float("inf") else int(capacity)
            args += [action_id, action, repr(float(cost)), cap]
        replies: list[Any] = self._reserve(keys=self.keys, args=args)
        pairs = zip(replies[::2], replies[1::2], strict=True)
        return [self._reservation(int(status), detail) for status, detail in pairs]

    def _reservation(self, status: int, detail: bytes | str) -> Reservation:
        if status == 3:
            raise LedgerLost(
                f"the ledger of period {self.period!r} was lost or replaced (its epoch changed): "
                "nothing is spent until it is rebuilt from the published actions"
            )
        if status == 2:
            return Reservation(granted=True, replayed=True, reason="replay")
        reason = detail.decode() if isinstance(detail, bytes) else str(detail)
        return Reservation(granted=status == 1, replayed=False, reason=reason)

    def release(self, action_id: str) -> bool:
        """Undo a reservation (its publish failed); False when there was none."""
        return bool(self._release(keys=self.keys[:3], args=[action_id]))

    def spent(self) -> float:
        value: bytes | None = self._client.get(self.keys[0])  # type: ignore[assignment]  # sync client
        return float(value or 0.0)

    def capacity_left(
        self, actions: Sequence[str], capacity: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        """``LedgerState.capacity_left`` of the counts as they are now."""
        return LedgerState(0.0, self.counts(), None).capacity_left(actions, capacity)

    def counts(self) -> dict[str, int]:
        raw: dict[bytes, bytes] = self._client.hgetall(self.keys[2])  # type: ignore[assignment]  # sync client
        return {k.decode(): int(v) for k, v in raw.items()}
