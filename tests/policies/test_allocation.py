"""Allocation never overspends, never exceeds capacity, never picks the ineligible (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from policies.allocation import (
    allocate_dual,
    allocate_greedy,
    allocate_optimal,
    choose_at_price,
    enforce_limits,
)
from policies.errors import BudgetError, ConfigError


@st.composite
def problems(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, list[float]]:
    n = draw(st.integers(1, 25))
    a = draw(st.integers(2, 5))
    value = draw(arrays(np.float64, (n, a), elements=st.floats(-100, 100)))
    cost = draw(arrays(np.float64, (n, a), elements=st.floats(0, 60)))
    cost[:, 0] = 0.0
    value[:, 0] = 0.0
    eligible = draw(arrays(np.bool_, (n, a)))
    budget = draw(st.floats(0, 400))
    caps = [np.inf] + [draw(st.sampled_from([np.inf, 0, 1, 2, 5])) for _ in range(a - 1)]
    return value, cost, eligible, budget, caps


def _check_feasible(
    choice: np.ndarray, cost: np.ndarray, eligible: np.ndarray, budget: float, caps: list[float]
) -> None:
    idx = np.arange(choice.size)
    assert cost[idx, choice].sum() <= budget + 1e-6
    counts = np.bincount(choice, minlength=len(caps))
    assert all(counts[a] <= caps[a] for a in range(1, len(caps)))
    treated = choice != 0
    assert eligible[idx[treated], choice[treated]].all(), "an ineligible action was chosen"


@settings(max_examples=200, deadline=None)
@given(problems())
def test_greedy_and_dual_are_feasible_and_deterministic(problem: tuple) -> None:
    value, cost, eligible, budget, caps = problem
    for allocate in (allocate_greedy, allocate_dual):
        choice = allocate(value, cost, eligible, budget, caps)
        _check_feasible(choice, cost, eligible, budget, caps)
        assert np.array_equal(choice, allocate(value, cost, eligible, budget, caps))
        assert (value[np.arange(choice.size), choice] >= 0).all(), "never a negative-value action"


@settings(max_examples=60, deadline=None)
@given(problems())
def test_dual_is_never_below_greedy_nor_above_the_optimum(problem: tuple) -> None:
    value, cost, eligible, budget, caps = problem
    idx = np.arange(value.shape[0])
    best = value[idx, allocate_optimal(value, cost, eligible, budget, caps)].sum()
    dual = value[idx, allocate_dual(value, cost, eligible, budget, caps)].sum()
    greedy = value[idx, allocate_greedy(value, cost, eligible, budget, caps)].sum()
    assert greedy - 1e-9 <= dual <= best + 1e-6


@pytest.mark.parametrize("seed", range(10))
def test_dual_is_near_optimal_on_realistic_problems(seed: int) -> None:
    # Continuous values and costs, a capped action, a binding budget: the engine's setting.
    rng = np.random.default_rng(seed)
    value = rng.normal(0.0, 100.0, (400, 5))
    cost = rng.uniform(5.0, 200.0, (400, 5))
    value[:, 0] = cost[:, 0] = 0.0
    eligible = rng.random((400, 5)) < 0.8
    caps = [np.inf, 10, np.inf, np.inf, np.inf]
    idx = np.arange(400)
    best = value[idx, allocate_optimal(value, cost, eligible, 4_000.0, caps)].sum()
    dual = value[idx, allocate_dual(value, cost, eligible, 4_000.0, caps)].sum()
    assert dual >= 0.98 * best


@settings(max_examples=100, deadline=None)
@given(problems(), st.floats(0, 500))
def test_enforce_limits_respects_any_budget(problem: tuple, budget: float) -> None:
    value, cost, eligible, _, caps = problem
    choice, score = choose_at_price(value, cost, eligible, 0.0)
    kept = enforce_limits(choice, score, cost, budget, caps)
    _check_feasible(kept, cost, eligible, budget, caps)
    assert np.all((kept == choice) | (kept == 0))


def test_ample_budget_gives_every_customer_its_best_action() -> None:
    value = np.array([[0.0, 5.0, 9.0], [0.0, -1.0, -2.0], [0.0, 3.0, 1.0]])
    cost = np.array([[0.0, 1.0, 8.0], [0.0, 1.0, 1.0], [0.0, 1.0, 1.0]])
    eligible = np.ones_like(value, dtype=bool)
    assert allocate_dual(value, cost, eligible, 1e9).tolist() == [2, 0, 1]
    # The ratio-greedy baseline prefers the cheap action for customer 0 (5/1 > 9/8).
    assert allocate_greedy(value, cost, eligible, 1e9).tolist() == [1, 0, 1]


@pytest.mark.parametrize(
    ("budget", "capacity", "error", "needle"),
    [
        (-1.0, None, BudgetError, "budget"),
        (float("nan"), None, BudgetError, "budget"),
        (10.0, [1.0], ConfigError, "capacity"),
    ],
)
def test_bad_limits_are_refused(
    budget: float, capacity: list[float] | None, error: type, needle: str
) -> None:
    value = np.zeros((2, 3))
    with pytest.raises(error, match=needle):
        allocate_dual(value, np.zeros((2, 3)), np.ones((2, 3), dtype=bool), budget, capacity)


def test_nan_values_are_refused() -> None:
    value = np.array([[0.0, np.nan]])
    with pytest.raises(ConfigError, match="finite"):
        allocate_greedy(value, np.zeros((1, 2)), np.ones((1, 2), dtype=bool), 10.0)
