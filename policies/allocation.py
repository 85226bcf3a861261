"""Batch allocation: which action each customer gets, maximizing total value under a budget and
per-action capacities.

``allocate_greedy`` is the production path: candidates (customer, action) with positive value are
taken in decreasing value-per-dollar order while budget and capacity last (one action per
customer). ``allocate_optimal`` solves the same multiple-choice knapsack exactly as a MILP with
scipy's HiGHS solver; it is too slow for a whole base but measures greedy's gap on samples.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_array, vstack

from policies.errors import BudgetError, ConfigError

__all__ = ["allocate_greedy", "allocate_optimal", "capacity_vector"]

DO_NOTHING = 0
Floats = NDArray[np.float64]


def capacity_vector(n_actions: int, capacity: Sequence[float] | None) -> Floats:
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
    capacity: Sequence[float] | None = None,
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
    capacity: Sequence[float] | None = None,
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
