"""Pacing on a simulated day: spend follows the target curve and the period ends on budget."""

from __future__ import annotations

import numpy as np
import pytest

from policies.arms import ArmConfig
from policies.decide import PolicyConfig, decide_batch, opportunities
from policies.pacing import Pacer, PacingConfig, initial_price
from simulator.config import WorldConfig
from simulator.day import OFFICE_HOURS_PROFILE, arrival_times, simulate_paced_day
from simulator.truth import contact_state, noisy_scores
from simulator.world import build_world


def test_target_curve_follows_the_profile() -> None:
    config = PacingConfig(budget=240.0, period_s=24.0, profile=(1.0, 3.0))
    assert config.target_spend(0) == 0
    assert config.target_spend(12) == pytest.approx(60.0)
    assert config.target_spend(24) == pytest.approx(240.0)
    assert PacingConfig(budget=100.0, period_s=10.0).target_spend(5) == pytest.approx(50.0)


def test_price_rises_ahead_of_the_curve_and_falls_behind() -> None:
    config = PacingConfig(budget=1_000.0, period_s=100.0)
    pacer = Pacer(1.0)
    assert pacer.updated(config, spent=600.0, elapsed_s=50.0, step_s=5.0).price > 1.0
    assert pacer.updated(config, spent=400.0, elapsed_s=50.0, step_s=5.0).price < 1.0
    assert pacer.allowance(config, spent=500.0, elapsed_s=50.0) == pytest.approx(500 * 0.03)


def test_a_simulated_day_tracks_the_curve_within_10pct_and_ends_within_2pct() -> None:
    world = build_world(WorldConfig(n_customers=60_000, seed=3))
    today = noisy_scores(world, noise=0.5, seed=1, keys="today")
    yesterday = noisy_scores(world, noise=0.5, seed=2, keys="yesterday")
    state = contact_state(world)
    policy = PolicyConfig(arms=ArmConfig(holdout_share=0.1, explore_share=0.02))
    unlimited = np.full(len(policy.catalog.names), np.inf)
    demand = decide_batch(today, state, policy, 1e15, unlimited).cost.sum()
    budget = 0.3 * demand  # the budget binds: without pacing, the morning would take it all
    pacing = PacingConfig(budget=budget, profile=OFFICE_HOURS_PROFILE)
    # The treatment arm spends the budget; exploration takes a little of it too.
    pacer = initial_price(*opportunities(yesterday, state, policy), budget)

    day = simulate_paced_day(
        today,
        state,
        policy,
        pacing,
        pacer,
        arrival_times(world.n, OFFICE_HOURS_PROFILE, 86_400.0, 4),
    )

    assert len(day.hours) == 24
    assert day.worst_hourly_error() <= 0.10, np.round(day.spent / day.target - 1, 3)
    assert day.spent[-1] <= budget + 1e-6
    assert day.spent[-1] >= 0.98 * budget
