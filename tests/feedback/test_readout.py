"""Decisions joined to outcomes: bad input counted, per-segment/action readouts, guardrails."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feedback.readout import Guardrail, experiment_report, join_feedback
from policies.errors import SchemaError

DECIDED = "2026-03-01T00:00:00+00:00"
LATER = "2026-06-01T00:00:00+00:00"


def _decisions(n: int, seed: int = 0, treated_rate: float = 0.9, held_rate: float = 0.8):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    arm = np.where(rng.random(n) < 0.5, "treatment", "holdout")
    action = np.where(arm == "treatment", "retention_email", "do_nothing")
    reasons = [
        [f"arm:{a}"] + ([] if a == "treatment" else ["policy_pick:retention_email"]) for a in arm
    ]
    actions = pd.DataFrame(
        {
            "action_id": [f"a{i}" for i in range(n)],
            "customer_id": [f"C{i}" for i in range(n)],
            "action": action,
            "cost": np.where(arm == "treatment", 5.0, 0.0),
            "segment": np.where(rng.random(n) < 0.5, "Critical Save", "Nurture"),
            "arm": arm,
            "propensity": 1.0,
            "reasons": reasons,
            "model_version": "v1",
            "decided_at": DECIDED,
        }
    )
    retained = rng.random(n) < np.where(arm == "treatment", treated_rate, held_rate)
    outcomes = pd.DataFrame(
        {
            "customer_id": actions["customer_id"],
            "outcome_type": np.where(retained, "renewed", "churned"),
            "value": 1_000.0,
            "occurred_at": LATER,
            "action_id": actions["action_id"],
        }
    )
    return actions, outcomes


def test_bad_input_is_counted_and_left_out() -> None:
    actions, outcomes = _decisions(400)
    conflicting = actions.iloc[[1]].assign(cost=999.0)  # same id, other content
    actions = pd.concat([actions, actions.iloc[[0, 0]], conflicting], ignore_index=True)
    stray = pd.DataFrame(
        {
            "customer_id": ["X", "C5", "C4"],
            "outcome_type": ["renewed", "churned", "complained"],
            "value": [1_000.0] * 3,
            "occurred_at": [LATER, LATER, "2026-01-01T00:00:00+00:00"],
            "action_id": ["nope", None, "a4"],
        }
    )
    awaiting = outcomes["action_id"].isin(["a397", "a398", "a399"])
    outcomes = pd.concat([outcomes[~awaiting], outcomes.iloc[[2, 2]], stray], ignore_index=True)
    joined, quality = join_feedback(actions, outcomes)
    assert quality.decisions_received == 403
    assert quality.duplicate_decisions == 2
    assert quality.conflicting_decisions == 1
    assert quality.duplicate_outcomes == 2
    assert quality.outcomes_for_unknown_actions == 1
    assert quality.outcomes_without_action_id == 1
    assert quality.outcomes_before_decision == 1
    assert quality.decisions_awaiting_outcome == 3
    assert set(joined["action_id"]) == {f"a{i}" for i in range(397)}
    assert not joined.set_index("action_id").loc["a4", "complained"], "too early to count"


def test_a_decision_with_both_renewal_and_churn_keeps_the_later_one() -> None:
    actions, outcomes = _decisions(10)
    late = outcomes.iloc[[0]].assign(
        outcome_type="churned" if outcomes.loc[0, "outcome_type"] == "renewed" else "renewed",
        occurred_at="2026-09-01T00:00:00+00:00",
    )
    joined, quality = join_feedback(actions, pd.concat([outcomes, late], ignore_index=True))
    assert quality.contradictory_renewals == 1
    row = joined.set_index("action_id").loc["a0"]
    assert bool(row["retained"]) == (late["outcome_type"].iloc[0] == "renewed")


def test_report_lift_per_segment_and_per_action_and_the_policy_pick_of_the_holdout() -> None:
    actions, outcomes = _decisions(6_000, treated_rate=0.9, held_rate=0.8)
    joined, quality = join_feedback(actions, outcomes)
    report = experiment_report(joined, quality)
    overall = report["overall"]
    assert overall["status"] == "ok"
    assert overall["lift_abs_ci"][0] <= 0.1 <= overall["lift_abs_ci"][1]
    assert set(report["by_segment"]) == {"Critical Save", "Nurture"}
    assert set(report["by_action"]) == {"retention_email"}, "holdout rows carry the policy's pick"


def test_a_small_test_is_labelled_underpowered_and_an_empty_arm_says_no_data() -> None:
    actions, outcomes = _decisions(60, treated_rate=0.82, held_rate=0.8)
    report = experiment_report(*join_feedback(actions, outcomes))
    assert report["overall"]["status"] == "underpowered"
    only_treated = actions[actions["arm"] == "treatment"]
    report = experiment_report(*join_feedback(only_treated, outcomes))
    assert report["overall"] == {"status": "no data", "arms_without_data": ["holdout"]}
    assert report["guardrails"][0]["status"] == "no data"


def test_a_guardrail_is_flagged_when_treatment_raises_complaints() -> None:
    actions, outcomes = _decisions(4_000)
    treated = actions.loc[actions["arm"] == "treatment", ["customer_id", "action_id"]]
    complaints = treated.iloc[: len(treated) // 20].assign(
        outcome_type="complained", value=0.0, occurred_at=LATER
    )
    joined, quality = join_feedback(actions, pd.concat([outcomes, complaints], ignore_index=True))
    rails = experiment_report(joined, quality, guardrails=(Guardrail("complained", 0.01),))
    (rail,) = rails["guardrails"]
    assert rail["status"] == "breached" and rail["increase"] == pytest.approx(0.05, abs=0.005)
    calm = experiment_report(joined, quality, guardrails=(Guardrail("complained", 0.1),))
    assert calm["guardrails"][0]["status"] == "ok"


def test_missing_columns_are_named() -> None:
    actions, outcomes = _decisions(5)
    with pytest.raises(SchemaError, match="arm"):
        join_feedback(actions.drop(columns=["arm"]), outcomes)
