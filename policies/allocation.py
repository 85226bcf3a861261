"""Allocation: which action each customer gets, maximizing total value under a budget and
per-action capacities (a multiple-choice knapsack).

- ``allocate_dual`` is the production path, shared with streaming: a price ``lam`` per dollar of
  budget (and ``mu[a]`` per unit of action a's capacity) turns the problem into an independent
  choice per customer, ``argmax_a EV[i, a] - lam x cost[i, a] - mu[a]``; the prices are found by
  bisection (scipy.optimize.bisect), the result is trimmed to be feasible (``enforce_limits``)
  and leftover budget is filled greedily. This is the Lagrangian relaxation of the LP; it needs
  O(customers x actions) per price, so a million customers take seconds. The greedy answer is
  computed too and returned when it is better (prices settle badly on adversarial ties), so the
  result is never below greedy's.
- ``allocate_greedy`` is the baseline: candidates in decreasing value-per-dollar order while
  budget and capacity last. With ample budget it still picks the best *ratio* per customer, not
  the best EV, which is why it is not the production path.
- ``allocate_optimal`` solves the same problem exactly as a MILP with scipy's HiGHS solver; too
  slow for a whole base, it measures the others' gap on samples (benchmarks/policy_value.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import Bounds, LinearConstraint, bisect, milp
from scipy.sparse import csr_array, vstack

from policies.errors import BudgetError, ConfigError

__all__ = [
    "DO_NOTHING",
    "Capacity",
    "allocate_dual",
    "allocate_greedy",
    "allocate_optimal",
    "capacity_vector",
    "choose_at_price",
    "enforce_limits",
    "price_for_budget",
]

DO_NOTHING = 0
Floats = NDArray[np.float64]
# Per-action capacities (count of customers); None means unlimited everywhere.
Capacity = Sequence[float] | NDArray[np.float64] | None
_MAX_PRICE = 1e12


def capacity_vector(n_actions: int, capacity: Capacity) -> Floats:
    """Per-action capacities (count of customers), ``inf`` where unlimited; column 0 unlimited."""
    if capacity is None:
        return np.full(n_actions, np.inf)
    caps = np.asarray(capacity, dtype=float)
    if caps.shape != (n_actions,):
        raise ConfigError(
            f"capacity must have one entry per action ({n_actions}), got {caps.shape}"
        )
    if np.any(np.isnan(caps)) or np.any(caps < 0):
        raise BudgetError("capacity must be >= 0 for every action")
    return caps


def _check(value: Floats, cost: Floats, eligible: NDArray[np.bool_], budget: float) -> None:
    if value.shape != cost.shape or value.shape != eligible.shape or value.ndim != 2:
        raise ConfigError(
            "value, cost and eligible must be arrays of the same shape [customers, actions]"
        )
    if not np.isfinite(budget) or budget < 0:
        raise BudgetError(f"budget must be a finite number >= 0, got {budget}")
    if np.any(~np.isfinite(value)) or np.any(~np.isfinite(cost)):
        raise ConfigError("value and cost must be finite (no NaN or inf)")
    if np.any(cost < 0):
        raise ConfigError("cost must be >= 0")


def allocate_greedy(
    value: Floats,
    cost: Floats,
    eligible: NDArray[np.bool_],
    budget: float,
    capacity: Capacity = None,
) -> NDArray[np.int64]:
    """The chosen action index per customer (0 = do_nothing), spend <= budget, counts <= capacity.

    ``value[i, a]`` is the net value (expected value after cost) of giving action ``a`` to
    customer ``i``; only positive, eligible candidates are considered. Deterministic: ties in
    value-per-dollar are broken by larger value, then by customer and action index.
    """
    _check(value, cost, eligible, budget)
    n, n_actions = value.shape
    caps = capacity_vector(n_actions, capacity).copy()
    choice = np.zeros(n, dtype=np.int64)
    mask = eligible & (value > 0)
    mask[:, DO_NOTHING] = False
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return choice
    gain, price = value[rows, cols], cost[rows, cols]
    with np.errstate(over="ignore"):  # a near-free action's ratio overflows to inf: take it first
        ratio = np.divide(gain, price, out=np.full_like(gain, np.inf), where=price > 0)
    order = np.lexsort((cols, rows, -gain, -ratio))
    remaining = float(budget)
    taken = np.zeros(n, dtype=bool)
    cheapest = float(price.min())
    for i, a, c in zip(
        rows[order].tolist(), cols[order].tolist(), price[order].tolist(), strict=True
    ):
        if remaining < cheapest:
            break
        if taken[i] or c > remaining or caps[a] < 1:
            continue
        choice[i] = a
        taken[i] = True
        remaining -= c
        caps[a] -= 1
    return choice


def allocate_optimal(
    value: Floats,
    cost: Floats,
    eligible: NDArray[np.bool_],
    budget: float,
    capacity: Capacity = None,
    time_limit_s: float = 60.0,
) -> NDArray[np.int64]:
    """The exact optimum of the same problem (MILP via scipy/HiGHS); for measuring, not serving."""
    _check(value, cost, eligible, budget)
    n, n_actions = value.shape
    caps = capacity_vector(n_actions, capacity)
    mask = eligible & (value > 0)
    mask[:, DO_NOTHING] = False
    rows, cols = np.nonzero(mask)
    choice = np.zeros(n, dtype=np.int64)
    if rows.size == 0:
        return choice
    k = rows.size
    one_per_customer = csr_array((np.ones(k), (rows, np.arange(k))), shape=(n, k))
    budget_row = csr_array(cost[rows, cols][None, :])
    limited = [a for a in range(n_actions) if np.isfinite(caps[a])]
    constraint_rows = [one_per_customer, budget_row]
    upper = [np.ones(n), np.array([budget])]
    if limited:
        (in_limited,) = np.nonzero(np.isin(cols, limited))
        per_action = csr_array(
            (np.ones(in_limited.size), (np.searchsorted(limited, cols[in_limited]), in_limited)),
            shape=(len(limited), k),
        )
        constraint_rows.append(per_action)
        upper.append(caps[limited])
    matrix = vstack(constraint_rows).tocsr()
    result = milp(
        c=-value[rows, cols],
        constraints=LinearConstraint(matrix, -np.inf, np.concatenate(upper)),
        integrality=np.ones(k),
        bounds=Bounds(0, 1),
        options={"time_limit": time_limit_s},
    )
    if result.x is None:
        raise BudgetError(f"the MILP solver found no solution: {result.message}")
    picked = result.x > 0.5
    choice[rows[picked]] = cols[picked]
    return choice


def choose_at_price(
    value: Floats, cost: Floats, eligible: NDArray[np.bool_], lam: float, mu: Floats | None = None
) -> tuple[NDArray[np.int64], Floats]:
    """Per customer, the eligible action maximizing value - lam x cost - mu[a], and that score.

    do_nothing (score 0) wins ties and whenever nothing scores above 0.
    """
    return _choose(_masked(value, eligible), cost, lam, mu)


def _masked(value: Floats, eligible: NDArray[np.bool_]) -> Floats:
    masked = np.where(eligible, value, -np.inf)
    masked[:, DO_NOTHING] = 0.0
    return masked


def _choose(
    masked: Floats, cost: Floats, lam: float, mu: Floats | None
) -> tuple[NDArray[np.int64], Floats]:
    score = masked - lam * cost if lam else masked.copy()
    if mu is not None:
        score -= mu[None, :]
    score[:, DO_NOTHING] = 0.0
    choice = np.argmax(score, axis=1).astype(np.int64)
    return choice, score[np.arange(score.shape[0]), choice]


def _spend(cost: Floats, choice: NDArray[np.int64]) -> float:
    return float(cost[np.arange(cost.shape[0]), choice].sum())


def price_for_budget(
    value: Floats,
    cost: Floats,
    eligible: NDArray[np.bool_],
    budget: float,
    mu: Floats | None = None,
) -> float:
    """The smallest price per dollar at which choosing at that price spends at most ``budget``."""
    return _price_for_budget(_masked(value, eligible), cost, budget, mu)


def _price_for_budget(masked: Floats, cost: Floats, budget: float, mu: Floats | None) -> float:
    if _spend(cost, _choose(masked, cost, 0.0, mu)[0]) <= budget:
        return 0.0
    positive = cost > 0
    with np.errstate(over="ignore"):
        ratio = np.where(positive, masked / np.where(positive, cost, 1.0), 0.0)
    # Above the best value per dollar nothing is worth buying; the cap keeps near-free actions
    # (cost ~1e-300) from pushing the bracket to infinity.
    top = min(float(np.max(ratio)), _MAX_PRICE) + 1.0

    def excess(lam: float) -> float:
        over = _spend(cost, _choose(masked, cost, lam, mu)[0]) - budget
        return 1.0 if over > 0 else -1.0  # sign only: spend is a step function of the price

    if excess(top) > 0:
        return top  # only near-free actions remain; enforce_limits trims them to the budget
    # A relative precision of 1e-6 is plenty: enforce_limits and the greedy fill absorb the rest.
    lam = float(bisect(excess, 0.0, top, xtol=1e-6 * top, maxiter=100))
    return lam if excess(lam) < 0 else lam + 1e-6 * top


def _capacity_prices(masked: Floats, cost: Floats, lam: float, caps: Floats) -> Floats:
    """mu[a] such that at most caps[a] customers prefer action a (exact, by order statistics).

    Customer i takes a iff its advantage (score of a minus its best alternative) exceeds mu[a],
    so mu[a] is the (caps[a]+1)-th largest advantage.
    """
    mu = np.zeros(caps.shape[0])
    for a in np.flatnonzero(np.isfinite(caps)):
        score = masked - lam * cost - mu[None, :]
        score[:, DO_NOTHING] = 0.0
        others = np.delete(score, a, axis=1).max(axis=1)
        advantage = score[:, a] - others
        k = int(caps[a])
        if np.count_nonzero(advantage >= 0) <= k:  # ties count: argmax may break them toward a
            continue
        kth = -float(np.partition(-advantage, k)[k])
        mu[a] = max(kth, 0.0) + 1e-9 * (1.0 + abs(kth))  # just above: ties go to the others
    return mu


def enforce_limits(
    choice: NDArray[np.int64],
    score: Floats,
    cost: Floats,
    budget: float,
    capacity: Capacity = None,
) -> NDArray[np.int64]:
    """Keep chosen actions in decreasing score order while budget and capacity last.

    Whatever does not fit falls back to do_nothing, so the result never spends more than
    ``budget`` nor uses an action more often than its capacity.
    """
    n, n_actions = cost.shape
    caps = capacity_vector(n_actions, capacity)
    kept = choice.copy()
    treated = np.flatnonzero(choice != DO_NOTHING)
    order = treated[np.lexsort((treated, -score[treated]))]
    actions = choice[order]
    rank_in_action = np.empty(order.size, dtype=np.int64)
    for a in np.unique(actions):
        where = np.flatnonzero(actions == a)
        rank_in_action[where] = np.arange(where.size)
    fits_capacity = rank_in_action < caps[actions]
    price = np.where(fits_capacity, cost[order, actions], 0.0)
    fits_budget = np.cumsum(price) <= budget + 1e-9
    kept[order[~(fits_capacity & fits_budget)]] = DO_NOTHING
    return kept


def allocate_dual(
    value: Floats,
    cost: Floats,
    eligible: NDArray[np.bool_],
    budget: float,
    capacity: Capacity = None,
) -> NDArray[np.int64]:
    """The production batch allocation (see the module docstring)."""
    _check(value, cost, eligible, budget)
    caps = capacity_vector(value.shape[1], capacity)
    masked = _masked(value, eligible)
    mu = np.zeros(value.shape[1])
    lam = _price_for_budget(masked, cost, budget, mu)
    if np.isfinite(caps[1:]).any():
        mu = _capacity_prices(masked, cost, lam, caps)
        lam = _price_for_budget(masked, cost, budget, mu)
    choice, score = _choose(masked, cost, lam, mu)
    choice = enforce_limits(choice, score, cost, budget, caps)
    dual = _fill_leftover(choice, value, cost, eligible, budget, caps)
    # Prices settle badly on adversarial ties (many equal values, near-free actions, tight
    # capacities); the greedy answer is cheap insurance, so the result is never below it.
    greedy = allocate_greedy(value, cost, eligible, budget, caps)
    rows = np.arange(value.shape[0])
    return dual if value[rows, dual].sum() >= value[rows, greedy].sum() else greedy


def _fill_leftover(
    choice: NDArray[np.int64],
    value: Floats,
    cost: Floats,
    eligible: NDArray[np.bool_],
    budget: float,
    caps: Floats,
) -> NDArray[np.int64]:
    idx = np.arange(choice.size)
    left = budget - float(cost[idx, choice].sum())
    used = np.bincount(choice, minlength=caps.size).astype(float)
    used[DO_NOTHING] = 0.0
    untreated = choice == DO_NOTHING
    if left < 0 or not untreated.any():  # left == 0 still admits free actions
        return choice
    extra = allocate_greedy(
        value[untreated], cost[untreated], eligible[untreated], left, np.maximum(caps - used, 0.0)
    )
    filled = choice.copy()
    filled[np.flatnonzero(untreated)] = extra
    return filled
