"""Decisions: holdout, eligibility, budget, determinism, batch/stream agreement, reasons, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.allocation import DO_NOTHING, choose_at_price
from policies.arms import Arm, ArmConfig, assign_arms
from policies.catalog import default_catalog
from policies.decide import (
    CAPACITY_EXHAUSTED,
    Outcome,
    PolicyConfig,
    Scores,
    decide_batch,
    decide_stream,
)
from policies.errors import SchemaError
from policies.pacing import Pacer
from policies.rules import Block, ContactState

CATALOG = default_catalog()
A = len(CATALOG.names)


def make_scores(n: int, seed: int) -> tuple[Scores, ContactState]:
    rng = np.random.default_rng(seed)
    uplift = rng.normal(0.02, 0.05, (n, A)).clip(-1, 1)
    uplift[:, 0] = 0.0
    expansion = rng.normal(0, 200, (n, A))
    expansion[:, 0] = 0.0
    ids = [f"C{seed}-{i}" for i in range(n)]
    scores = Scores(
        customer_ids=ids,
        decision_keys=[f"k:{c}" for c in ids],
        p_churn=rng.random(n),
        uplift_retention=uplift,
        uplift_expansion=expansion,
        customer_value=rng.lognormal(8, 1.2, n),
        engagement=rng.random(n),
    )
    state = ContactState(
        consent=rng.random((n, 3)) < 0.8,
        days_since_contact=np.where(rng.random((n, 3)) < 0.3, rng.uniform(0, 40, (n, 3)), np.inf),
        contacts_in_window=rng.integers(0, 5, n),
        do_not_disturb=rng.random(n) < 0.05,
    )
    return scores, state


def _invariants(d, scores: Scores, budget: float, capacity: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    assert d.cost.sum() <= budget + 1e-6
    counts = np.bincount(d.action, minlength=A)
    assert all(counts[a] <= capacity[a] for a in range(1, A))
    acted = d.action != 0
    assert np.all(d.blocked[np.flatnonzero(acted), d.action[acted]] == Block.NONE), (
        "ineligible chosen"
    )
    assert np.all(d.action[d.arm == Arm.HOLDOUT] == 0), "a holdout customer got an action"
    assert np.all((d.propensity > 0) & (d.propensity <= 1))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 300), st.integers(0, 10_000), st.floats(0, 50_000), st.integers(0, 50))
def test_batch_decisions_hold_every_invariant(n: int, seed: int, budget: float, calls: int) -> None:
    scores, state = make_scores(n, seed)
    capacity = CATALOG.capacities().copy()
    capacity[CATALOG.index("account_manager_call")] = calls
    config = PolicyConfig(arms=ArmConfig(holdout_share=0.2, explore_share=0.1))
    first = decide_batch(scores, state, config, budget, capacity)
    _invariants(first, scores, budget, capacity)
    again = decide_batch(scores, state, config, budget, capacity)
    assert np.array_equal(first.action, again.action) and np.array_equal(
        first.propensity, again.propensity
    )


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 300), st.integers(0, 10_000), st.floats(0, 5_000), st.floats(0, 50))
def test_stream_decisions_hold_every_invariant(
    n: int, seed: int, allowance: float, price: float
) -> None:
    scores, state = make_scores(n, seed)
    capacity = np.array([np.inf, 3, np.inf, 5, np.inf, np.inf])
    config = PolicyConfig(arms=ArmConfig(holdout_share=0.2, explore_share=0.1))
    decided = decide_stream(scores, state, config, Pacer(price), allowance, capacity)
    _invariants(decided, scores, allowance, capacity)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 300), st.integers(0, 10_000))
def test_batch_and_stream_agree_on_the_ev_ranking(n: int, seed: int) -> None:
    scores, state = make_scores(n, seed)
    config = PolicyConfig(arms=ArmConfig(holdout_share=0.0, explore_share=0.0))
    unlimited = np.full(A, np.inf)
    batch = decide_batch(scores, state, config, 1e15, unlimited)
    stream = decide_stream(scores, state, config, Pacer(0.0), 1e15, unlimited)
    eligible = batch.blocked == Block.NONE
    best, _ = choose_at_price(batch.ev_all, np.zeros_like(batch.ev_all), eligible, 0.0)
    assert np.array_equal(batch.action, stream.action)
    assert np.array_equal(batch.action, best)


def test_holdout_is_a_stable_hash_with_the_configured_share() -> None:
    ids = [f"cust-{i}" for i in range(40_000)]
    config = ArmConfig(experiment="exp-a", holdout_share=0.1, explore_share=0.05)
    arms = assign_arms(ids, config)
    assert np.array_equal(arms, assign_arms(list(reversed(ids)), config)[::-1]), "order-free"
    assert abs((arms == Arm.HOLDOUT).mean() - 0.1) < 0.01
    assert abs((arms == Arm.EXPLORE).mean() - 0.05) < 0.01
    other = assign_arms(ids, ArmConfig(experiment="exp-b", holdout_share=0.1, explore_share=0.05))
    assert not np.array_equal(arms, other), "a new experiment reshuffles"


def test_every_decision_carries_reasons_and_an_explanation() -> None:
    scores, state = make_scores(200, 1)
    decided = decide_batch(scores, state, PolicyConfig(), 2_000.0)
    for i in range(200):
        reasons = decided.reasons(i)
        assert reasons[0].startswith("segment:") and reasons[1].startswith("arm:")
        assert decided.explanation(i).count("\n") == 0
    acted = int(np.flatnonzero(decided.action != 0)[0])
    assert "uplift" in decided.explanation(acted) and "EV $" in decided.explanation(acted)


def test_all_reasons_at_once_are_each_decisions_reasons() -> None:
    scores, state = make_scores(3_000, 8)
    config = PolicyConfig(arms=ArmConfig(experiment="r", holdout_share=0.2, explore_share=0.2))
    left = np.full(A, np.inf)
    left[2] = 0.0  # every decision also names what ran out
    for decided in (
        decide_batch(scores, state, config, 20_000.0),
        decide_stream(scores, state, config, Pacer(0.0), 20_000.0, left),
    ):
        every = decided.all_reasons()
        assert every == [decided.reasons(i) for i in range(3_000)]
        assert any(r.startswith("blocked:") for reasons in every for r in reasons)
        assert any(r.startswith("policy_pick:") for reasons in every for r in reasons)


def test_blocked_action_becomes_a_reason_code() -> None:
    scores, _ = make_scores(1, 5)
    call = CATALOG.index("account_manager_call")
    uplift = scores.uplift_retention.copy()
    uplift[0] = [0, 0.5, 0, 0, 0, 0]
    rich = Scores(
        scores.customer_ids,
        scores.decision_keys,
        scores.p_churn,
        uplift,
        np.zeros((1, A)),
        np.array([100_000.0]),
        scores.engagement,
    )
    no_phone = ContactState.fresh(1, np.array([[False, True, True]]))
    decided = decide_batch(
        rich, no_phone, PolicyConfig(arms=ArmConfig(holdout_share=0, explore_share=0)), 1e6
    )
    assert decided.action[0] != call
    assert "blocked:account_manager_call:no_consent" in decided.reasons(0)


@pytest.mark.parametrize(
    ("field", "bad", "needle"),
    [
        ("p_churn", np.array([np.nan]), "p_churn must be finite"),
        ("p_churn", np.array([1.5]), "p_churn must lie in"),
        ("uplift_retention", np.full((1, A), 2.0), "uplift_retention"),
        ("uplift_retention", np.zeros((1, A - 1)), "catalog"),
        ("customer_value", np.array([-5.0]), "customer_value"),
    ],
)
def test_bad_scores_are_refused_before_any_decision(
    field: str, bad: np.ndarray, needle: str
) -> None:
    scores, state = make_scores(1, 3)
    values = {**scores.__dict__, field: bad}
    with pytest.raises(SchemaError, match=needle):
        decide_batch(Scores(**values), state, PolicyConfig(), 100.0)


def test_an_action_without_capacity_left_is_chosen_by_nobody_exploration_included() -> None:
    scores, state = make_scores(3_000, 21)
    config = PolicyConfig(arms=ArmConfig(experiment="cap", holdout_share=0.1, explore_share=0.5))
    left = np.full(A, np.inf)
    left[2] = 0.0
    d = decide_stream(scores, state, config, Pacer(0.0), np.inf, left)
    assert not np.any(d.action == 2)
    explored = d.arm == Arm.EXPLORE
    assert len(set(d.action[explored].tolist())) >= 3, "exploration still spreads over the rest"
    unlimited = decide_stream(scores, state, config, Pacer(0.0), np.inf, None)
    assert np.any(unlimited.action == 2), "without the limit the action is chosen"
    gone = f"{CAPACITY_EXHAUSTED}:{CATALOG.names[2]}"
    assert all(gone in d.reasons(i) for i in range(3_000)), "every decision logs what ran out"
    assert not any(gone in unlimited.reasons(i) for i in range(3_000))


def test_an_explored_pick_cut_by_the_allowance_is_logged_as_limit_reached() -> None:
    """Exploration's draw is uniform only until a limit cuts it: a cut pick is served as
    do_nothing and marked, so that no reader takes it for a drawn do_nothing."""
    scores, state = make_scores(2_000, 23)
    config = PolicyConfig(arms=ArmConfig(experiment="cut", holdout_share=0.1, explore_share=0.4))
    free = decide_stream(scores, state, config, Pacer(0.0), np.inf)
    tight = decide_stream(scores, state, config, Pacer(0.0), 50.0)
    explored = tight.arm == Arm.EXPLORE
    cut = explored & (tight.action != free.action)
    assert cut.sum() > 50 and np.all(tight.action[cut] == DO_NOTHING)
    assert np.all(tight.outcome[cut] == Outcome.LIMIT_REACHED)
    assert np.all(tight.outcome[explored & ~cut] == Outcome.EXPLORE)
    assert np.all(free.outcome[explored] == Outcome.EXPLORE)
    i = int(np.flatnonzero(cut)[0])
    assert "decision:limit_reached" in tight.reasons(i) and "arm:explore" in tight.reasons(i)
    assert "explored action did not fit" in tight.explanation(i)
    rows = tight.all_reasons()
    assert all(rows[j] == tight.reasons(j) for j in np.flatnonzero(cut)[:20])
    batch = decide_batch(scores, state, config, 50.0)
    assert np.any((batch.arm == Arm.EXPLORE) & (batch.outcome == Outcome.LIMIT_REACHED))


def test_a_batch_decision_never_picks_what_is_unavailable_to_that_customer() -> None:
    scores, state = make_scores(2_000, 24)
    config = PolicyConfig(arms=ArmConfig(experiment="off", holdout_share=0.0, explore_share=0.2))
    free = decide_batch(scores, state, config, budget=1e9)
    popular = int(np.bincount(free.action, minlength=A)[1:].argmax()) + 1
    unavailable = np.zeros((2_000, A), dtype=bool)
    unavailable[:1_000, popular] = True  # ran out for the first half of the log
    d = decide_batch(scores, state, config, budget=1e9, unavailable=unavailable)
    assert not np.any(d.action[:1_000] == popular)
    assert np.any(d.action[1_000:] == popular)
    with pytest.raises(SchemaError, match="unavailable must be"):
        decide_batch(scores, state, config, budget=1e9, unavailable=unavailable[:, :2])


def test_the_logged_propensity_matches_how_often_exploration_draws_the_action() -> None:
    """Among exploration customers with the same eligible set, the share of each action chosen
    equals its logged propensity times (t + e) / e: the log is usable for IPS."""
    scores, state = make_scores(6_000, 22)
    state = ContactState.fresh(6_000, np.ones((6_000, 3), dtype=bool))
    arms = ArmConfig(experiment="prop", holdout_share=0.0, explore_share=0.5)
    d = decide_stream(scores, state, PolicyConfig(arms=arms), Pacer(0.2), np.inf)
    explored = d.arm == Arm.EXPLORE
    treated = d.arm == Arm.TREATMENT
    # Treatment: the policy's own pick, with the mixture's propensity t/(t+e) + e/(t+e)/k.
    assert np.all(d.action[treated] == d.policy_pick[treated])
    assert np.all(d.propensity[treated] > 0.5)
    # Exploration: an action other than the policy's pick has propensity e/(t+e)/k.
    others = explored & (d.action != d.policy_pick)
    k = 1.0 / (2.0 * d.propensity[others])
    assert np.allclose(k, np.round(k)) and np.all(k >= 2)


def test_holdout_and_explore_decisions_name_the_policys_pick_in_their_reasons() -> None:
    scores, state = make_scores(500, 23)
    config = PolicyConfig(arms=ArmConfig(experiment="why", holdout_share=0.3, explore_share=0.3))
    d = decide_stream(scores, state, config, Pacer(0.0), np.inf)
    for i in range(500):
        picks = [r for r in d.reasons(i) if r.startswith("policy_pick:")]
        if d.arm[i] == Arm.TREATMENT:
            assert picks == []
        else:
            assert picks == [f"policy_pick:{CATALOG.names[int(d.policy_pick[i])]}"]
