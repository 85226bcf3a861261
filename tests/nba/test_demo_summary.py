"""The demo's yardsticks: the treatment arm's decisions against the true-effect oracle under the
same customers, rules and spend, the realized-outcome oracle and risk-sorted."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from nba.demo_summary import yardsticks
from policies.allocation import allocate_dual
from policies.arms import ArmConfig
from policies.decide import PolicyConfig, opportunities
from simulator.config import WorldConfig
from simulator.truth import contact_state, noisy_scores
from simulator.world import World, build_world


@pytest.fixture(scope="module")
def world() -> World:
    return build_world(WorldConfig(n_customers=4_000, seed=3))


def _actions(world: World, choice: np.ndarray, arm: str = "treatment") -> list[dict[str, Any]]:
    ids = world.customers["customer_id"].astype(str).to_numpy()
    return [
        {"customer_id": ids[i], "action": world.actions[choice[i]], "arm": arm}
        for i in range(world.n)
        if i % 3 == 0  # the customers who triggered a decision
    ]


def _best(world: World, budget: float) -> np.ndarray:
    config = PolicyConfig(arms=ArmConfig(holdout_share=0.0, explore_share=0.0))
    _, cost, allowed = opportunities(noisy_scores(world, noise=0.0), contact_state(world), config)
    decided = np.arange(world.n) % 3 == 0
    allowed[~decided] = False
    allowed[:, 0] = True
    net = world.true_uplift() - cost
    return allocate_dual(net, cost, allowed, budget, config.catalog.capacities())


def test_the_oracles_own_choices_score_one_and_harm_nobody(world: World) -> None:
    p_churn = 1.0 - world.p_retain[:, 0]
    measured = yardsticks(world, _actions(world, _best(world, 20_000.0)), p_churn)
    assert measured["vs_true_effect_oracle"] == pytest.approx(1.0, abs=0.01)
    assert measured["harmful_share_of_treated"] == 0.0
    assert measured["vs_realized_outcome_oracle"] < 1.0 < measured["vs_risk_sorted"]


def test_random_choices_score_less_and_holdout_customers_do_not_count(world: World) -> None:
    p_churn = 1.0 - world.p_retain[:, 0]
    rng = np.random.default_rng(0)
    shuffled = rng.permutation(_best(world, 20_000.0))  # same actions, wrong customers
    measured = yardsticks(world, _actions(world, shuffled), p_churn)
    assert measured["vs_true_effect_oracle"] < 0.5
    held_out = yardsticks(world, _actions(world, shuffled, arm="holdout"), p_churn)
    assert np.isnan(held_out["vs_true_effect_oracle"])  # nothing treated, nothing to compare
