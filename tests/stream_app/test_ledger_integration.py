"""The budget ledger against the real Redis, single and clustered: atomic under concurrency,
idempotent on replay."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from policies.errors import BudgetError
from stream_app.ledger import BudgetLedger, LedgerLost
from stream_app.redis_clients import RedisClient

pytestmark = pytest.mark.integration


@pytest.fixture
def client(connect_redis: Callable[[], RedisClient]) -> RedisClient:
    return connect_redis()


def test_concurrent_workers_never_overspend_nor_exceed_capacity(
    connect_redis: Callable[[], RedisClient],
) -> None:
    period = f"p-{uuid.uuid4().hex}"
    ledgers = [BudgetLedger(connect_redis(), period, budget=1_000.0) for _ in range(8)]

    def worker(k: int) -> int:
        granted = 0
        for i in range(200):
            action = "call" if i % 3 == 0 else "email"
            cost = 40.0 if action == "call" else 7.0
            capacity = 10 if action == "call" else None
            if ledgers[k].reserve(f"w{k}-{i}", action, cost, capacity).granted:
                granted += 1
        return granted

    with ThreadPoolExecutor(max_workers=8) as pool:
        granted = sum(pool.map(worker, range(8)))
    ledger = ledgers[0]
    counts = ledger.counts()
    assert ledger.spent() <= 1_000.0 + 1e-6
    assert counts.get("call", 0) <= 10
    assert granted == sum(counts.values())
    assert ledger.spent() == pytest.approx(
        40.0 * counts.get("call", 0) + 7.0 * counts.get("email", 0)
    )
    assert ledger.spent() > 950.0, "the budget was used, not refused wholesale"


def test_a_replayed_action_id_spends_nothing_more(client: RedisClient) -> None:
    ledger = BudgetLedger(client, f"p-{uuid.uuid4().hex}", budget=100.0)
    first = ledger.reserve("a-1", "call", 60.0)
    again = ledger.reserve("a-1", "call", 60.0)
    assert first.granted and not first.replayed
    assert again.granted and again.replayed
    assert ledger.spent() == 60.0
    assert not ledger.reserve("a-2", "call", 60.0).granted, "would overspend"


def test_release_gives_budget_and_capacity_back(client: RedisClient) -> None:
    ledger = BudgetLedger(client, f"p-{uuid.uuid4().hex}", budget=100.0)
    assert ledger.reserve("a-1", "call", 80.0, capacity=1).granted
    assert ledger.reserve("a-2", "call", 10.0, capacity=1).reason == "capacity"
    assert ledger.release("a-1") and not ledger.release("a-1")
    assert ledger.spent() == 0.0
    assert ledger.reserve("a-2", "call", 10.0, capacity=1).granted


def test_negative_amounts_are_refused(client: RedisClient) -> None:
    with pytest.raises(BudgetError):
        BudgetLedger(client, "p", budget=-1.0)
    with pytest.raises(BudgetError):
        BudgetLedger(client, "p", budget=1.0).reserve("a", "call", -5.0)


def _lose(client: RedisClient, period: str) -> None:
    """What FLUSHALL does to one period's ledger (the session's Redis is shared by tests)."""
    client.delete(*BudgetLedger(client, period, 0.0).keys)


def test_a_lost_ledger_spends_nothing_until_rebuilt_and_then_holds_its_old_spend(
    client: RedisClient,
) -> None:
    period = f"p-{uuid.uuid4().hex}"
    worker, other = BudgetLedger(client, period, 100.0), BudgetLedger(client, period, 100.0)
    assert worker.reserve("a-1", "call", 60.0).granted
    assert other.reserve("a-2", "email", 5.0).granted
    _lose(client, period)

    with pytest.raises(LedgerLost):
        worker.reserve("a-3", "email", 5.0)
    with pytest.raises(LedgerLost):
        other.reserve("a-1", "call", 60.0)
    assert worker.spent() == 0.0, "nothing was spent on the lost ledger"

    published = [("a-1", "call", 60.0), ("a-2", "email", 5.0), ("a-1", "call", 60.0)]
    assert worker.rebuild(published) is True
    assert other.rebuild(published) is False, "the second worker adopts the rebuilt ledger"
    assert worker.spent() == 65.0 and worker.counts() == {"call": 1, "email": 1}
    assert worker.reserve("a-1", "call", 60.0).replayed, "a replay finds its reservation"
    assert not other.reserve("a-4", "call", 60.0).granted, "the old spend still counts"
    assert worker.epoch == other.epoch


def test_the_state_read_in_one_round_trip_is_the_ledger_and_knows_a_lost_one(
    client: RedisClient,
) -> None:
    period = f"p-{uuid.uuid4().hex}"
    worker = BudgetLedger(client, period, 100.0)
    assert worker.reserve("a-1", "call", 60.0).granted
    assert worker.reserve("a-2", "email", 5.0).granted
    state = worker.checked_state()
    assert (state.spent, state.counts, state.epoch) == (65.0, worker.counts(), worker.epoch)
    assert state.counts == {"call": 1, "email": 1}
    left = state.capacity_left(["call", "email", "sms"], np.array([1.0, 10.0, np.inf]))
    assert left.tolist() == [0.0, 9.0, np.inf]
    _lose(client, period)
    assert worker.state().epoch is None
    with pytest.raises(LedgerLost):
        worker.checked_state()


def test_an_operator_rebuild_makes_every_worker_rebuild(client: RedisClient) -> None:
    period = f"p-{uuid.uuid4().hex}"
    worker = BudgetLedger(client, period, 100.0)
    assert worker.reserve("a-1", "call", 60.0).granted
    operator = BudgetLedger(client, period, 100.0)
    operator.forget_epoch()
    assert operator.rebuild([("a-1", "call", 60.0)])
    with pytest.raises(LedgerLost):
        worker.reserve("a-2", "email", 5.0)
    worker.open()
    assert worker.reserve("a-2", "email", 5.0).granted and worker.spent() == 65.0


def test_a_batch_of_reservations_decides_as_the_same_calls_one_by_one(
    client: RedisClient,
) -> None:
    requests = [
        ("a-1", "call", 40.0, 2),
        ("a-2", "email", 7.0, None),
        ("a-1", "call", 40.0, 2),  # the same action_id again: a replay, nothing more spent
        ("a-3", "call", 40.0, 2),
        ("a-4", "call", 40.0, 2),  # over the capacity of 2 calls
        ("a-5", "email", 7.0, float("inf")),
        ("a-6", "email", 60.0, None),  # over the budget (94 spent of 150)
        ("a-7", "email", 56.0, None),  # fills the budget exactly
    ]
    batched = BudgetLedger(client, f"p-{uuid.uuid4().hex}", budget=150.0)
    single = BudgetLedger(client, f"p-{uuid.uuid4().hex}", budget=150.0)
    together = batched.reserve_many(requests)
    one_by_one = [single.reserve(*request) for request in requests]
    assert together == one_by_one
    assert [r.reason for r in together] == [
        "reserved",
        "reserved",
        "replay",
        "reserved",
        "capacity",
        "reserved",
        "budget",
        "reserved",
    ]
    assert batched.spent() == single.spent() == pytest.approx(150.0)
    assert batched.counts() == single.counts() == {"call": 2, "email": 3}


def test_a_batch_on_a_lost_ledger_spends_nothing(client: RedisClient) -> None:
    ledger = BudgetLedger(client, f"p-{uuid.uuid4().hex}", budget=100.0)
    ledger.open(create=True)
    ledger.forget_epoch()
    with pytest.raises(LedgerLost):
        ledger.reserve_many([("a-1", "call", 10.0, None), ("a-2", "call", 10.0, None)])
    assert ledger.spent() == 0.0
    with pytest.raises(BudgetError):
        ledger.reserve_many([("a-3", "call", -1.0, None)])
