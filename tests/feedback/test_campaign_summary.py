"""The campaign page's words and curves, from frames whose answers are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feedback.campaign_summary import (
    BudgetCurve,
    label,
    lift_in_words,
    money,
    qini_summary,
    talking_points,
)
from feedback.experiments import readout


def _arms(treated_rate: float, holdout_rate: float, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "arm": ["treatment"] * n + ["holdout"] * n,
            "retained": np.concatenate(
                [rng.random(n) < treated_rate, rng.random(n) < holdout_rate]
            ),
            "cost": [10.0] * n + [0.0] * n,
            "value": 1_000.0,
            "uplift": np.concatenate([rng.random(n), rng.random(n)]),
        }
    )


def test_names_and_money_read_as_words() -> None:
    assert label("retention_email") == "Retention email"
    assert money(12_345.6) == "$12,346" and money(19) == "$19.00" and money(-250) == "-$250"


def test_a_small_experiment_says_how_many_more_customers_it_needs() -> None:
    words = lift_in_words(readout(_arms(0.80, 0.78, 200)))
    assert words["status"] == "underpowered"
    assert words["headline"] == (
        f"Not enough data yet: about {words['more_per_arm']:,} more customers per group needed"
    )
    assert words["more_per_arm"] > 1_000
    assert "from 200 treated and 200 holdout customers" in words["detail"]


def test_a_large_clear_lift_says_the_campaign_works_with_its_interval() -> None:
    words = lift_in_words(readout(_arms(0.85, 0.70, 5_000)))
    assert words["headline"] == "The campaign works"
    assert "95% interval +" in words["detail"]
    assert lift_in_words({"status": "no data"})["headline"] == "No outcomes yet"


def test_the_qini_curve_needs_both_arms_and_starts_at_zero() -> None:
    frame = _arms(0.8, 0.7, 300)
    curve = qini_summary(frame)
    assert curve is not None and curve["customers"][0] == 0 and curve["incremental"][0] == 0
    assert curve["n"] == 600 and len(curve["customers"]) <= 40
    assert qini_summary(frame[frame["arm"] == "treatment"]) is None


def test_the_budget_curve_spends_on_the_best_value_per_dollar_first() -> None:
    decisions = pd.DataFrame(
        {
            "cost": [10.0, 50.0, 1.0, 0.0, 20.0],
            "expected_value": [90.0, 50.0, 2.0, 0.0, -5.0],  # net of cost
        }
    )
    curve = BudgetCurve.of(decisions)
    # $10 for $100 gross (10/$), $1 for $3 (3/$), $50 for $100 (2/$); the negative one never.
    assert curve.spend.tolist() == [0.0, 10.0, 11.0, 61.0]
    assert curve.value.tolist() == [0.0, 100.0, 103.0, 203.0]
    assert curve.at(10.5) == {
        "budget": 10.5,
        "customers": 1,
        "spend": 10.0,
        "incremental_value": 100.0,
        "net_value": 90.0,
    }
    assert curve.at(1_000)["customers"] == 3 and curve.max_useful_budget == 61.0
    assert curve.points(2)["customers"] == [0, 3] and curve.points()["base"] == 5


@pytest.mark.parametrize(
    ("arm", "action", "expected"),
    [
        ("holdout", "do_nothing", "in the holdout"),
        ("treatment", "do_nothing", "No action is worth its cost"),
        ("treatment", "retention_email", "Suggested: retention email by email"),
    ],
)
def test_talking_points_follow_the_decision(arm: str, action: str, expected: str) -> None:
    decision = {
        "action": action,
        "arm": arm,
        "channel": "email",
        "p_churn": 0.31,
        "segment": "high_risk",
        "customer_value": 4_200.0,
        "cost": 1.0,
        "expected_value": 80.0,
        "uplift": 0.05,
        "reasons": ["segment:high_risk", "driver:tickets_7d:0.4", "driver:seats:-0.1"],
    }
    points = talking_points(decision)
    assert points[0] == "Risk of leaving: 31% (high risk segment); customer value $4,200."
    assert any(expected in p for p in points), points
    assert points[-1] == "What weighs most on the risk: tickets 7d (raises it), seats (lowers it)."
