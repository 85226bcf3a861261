"""A/B design and readout on the simulator's ground truth."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from feedback.experiments import readout, sample_size_per_arm
from policies.errors import ConfigError, SchemaError
from simulator.config import WorldConfig
from simulator.world import build_world


def test_sample_size_matches_the_textbook_two_proportion_formula() -> None:
    p1, p2 = 0.20, 0.18
    pooled = (p1 + p2) / 2
    z_a, z_b = norm.ppf(0.975), norm.ppf(0.8)
    numerator = z_a * math.sqrt(2 * pooled * (1 - pooled)) + z_b * math.sqrt(
        p1 * (1 - p1) + p2 * (1 - p2)
    )
    expected = numerator**2 / (p1 - p2) ** 2  # 6,039 per arm; the arcsine transform gives 6,036
    assert sample_size_per_arm(0.18, 0.02) == pytest.approx(expected, rel=0.01)
    assert sample_size_per_arm(0.18, 0.02, power=0.9) > sample_size_per_arm(0.18, 0.02)


def test_the_lift_ci_covers_the_true_lift_of_the_served_action() -> None:
    world = build_world(WorldConfig(n_customers=60_000, seed=21))
    rng = np.random.default_rng(3)
    holdout = rng.random(world.n) < 0.2
    call = world.actions.index("account_manager_call")
    served = np.where(holdout, 0, call)
    frame = pd.DataFrame(
        {
            "arm": np.where(holdout, "holdout", "treatment"),
            "retained": world.retained[np.arange(world.n), served],
            "cost": world.cost[np.arange(world.n), served],
            "value": world.value,
        }
    )
    result = readout(frame)
    treated = ~holdout
    true_lift = float(
        (world.retained[treated, call].astype(float) - world.retained[treated, 0]).mean()
    )
    low, high = result["lift_abs_ci"]
    assert low <= true_lift <= high, (low, true_lift, high)
    assert result["status"] == "ok" and result["p_value"] < 0.05
    assert result["cost_per_save"] > 0 and result["spend"] == pytest.approx(200.0 * treated.sum())


def test_small_tests_are_labelled_underpowered_and_empty_arms_reported() -> None:
    rng = np.random.default_rng(1)
    small = pd.DataFrame(
        {
            "arm": rng.choice(["treatment", "holdout"], 200),
            "retained": rng.random(200) < 0.8,
            "cost": 5.0,
            "value": 1_000.0,
        }
    )
    assert readout(small)["status"] == "underpowered"
    assert readout(small[small["arm"] == "treatment"]) == {
        "status": "no data",
        "arms_without_data": ["holdout"],
    }


def test_bad_input_is_named() -> None:
    with pytest.raises(ConfigError, match="between 0 and 1"):
        sample_size_per_arm(0.95, 0.1)
    with pytest.raises(ConfigError, match="not be 0"):
        sample_size_per_arm(0.2, 0.0)
    with pytest.raises(SchemaError, match="retained"):
        readout(pd.DataFrame({"arm": ["treatment"], "cost": [1.0], "value": [1.0]}))


def test_readout_of_arms_where_everyone_stayed_has_no_difference_and_no_warning() -> None:
    import warnings

    frame = pd.DataFrame(
        {"arm": ["treatment"] * 30 + ["holdout"] * 20, "retained": True, "cost": 1.0, "value": 9.0}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = readout(frame)
    assert result["p_value"] == 1.0 and result["lift_abs"] == 0.0
    assert result["status"] == "underpowered"


def test_stratified_assignment_balances_every_risk_value_tenure_stratum() -> None:
    from feedback.experiments import stratified_assignment

    rng = np.random.default_rng(4)
    n = 3_000
    columns = (
        pd.Series([f"C{i}" for i in range(n)]),
        pd.Series(rng.random(n)),
        pd.Series(rng.lognormal(8, 1, n)),
        pd.Series(rng.integers(1, 60, n)),
    )
    frame = stratified_assignment(*columns, holdout_share=0.3, seed=1)
    assert frame.equals(stratified_assignment(*columns, holdout_share=0.3, seed=1))
    assert frame["stratum"].nunique() == 27
    held = frame.groupby("stratum")["arm"].apply(lambda a: (a == "holdout").sum())
    sizes = frame.groupby("stratum").size()
    assert np.all(np.abs(held - 0.3 * sizes) <= 1.0), "each stratum split at the share"
    with pytest.raises(ConfigError, match="holdout share"):
        stratified_assignment(
            frame["customer_id"],
            pd.Series(np.ones(n)),
            pd.Series(np.ones(n)),
            pd.Series(np.ones(n)),
            1.0,
        )
