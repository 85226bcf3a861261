"""Off-policy estimators on a synthetic log whose true values are known exactly."""

from __future__ import annotations

import numpy as np
import pytest

from feedback.ope import OffPolicyLog, compare, evaluate_policy
from policies.errors import SchemaError

K = 4


def _world(seed: int, n: int = 4_000) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    """Mean reward per [context, action] and the logging policy's deterministic pick."""
    rng = np.random.default_rng(seed)
    mean = rng.uniform(0.0, 10.0, (n, K))
    logging_pick = np.argmax(mean + rng.normal(0, 4, (n, K)), axis=1)
    return mean, logging_pick, rng


def _log(
    mean: np.ndarray, pick: np.ndarray, rng: np.random.Generator, q_noise: float
) -> OffPolicyLog:
    """The engine's mixture: 80% the policy's pick, 20% uniform over the K actions."""
    n = mean.shape[0]
    explore = rng.random(n) < 0.2
    action = np.where(explore, rng.integers(0, K, n), pick)
    propensity = 0.8 * (action == pick) + 0.2 / K
    reward = rng.normal(mean[np.arange(n), action], 3.0)
    q_hat = mean + rng.normal(0, q_noise, mean.shape)
    return OffPolicyLog(action.astype(np.int64), propensity, reward, q_hat)


@pytest.mark.parametrize("estimator", ["ips", "snips", "dr"])
def test_intervals_cover_the_true_value_about_95_times_in_100(estimator: str) -> None:
    covered = 0
    for seed in range(60):
        mean, pick, rng = _world(seed)
        target = np.argmax(mean + rng.normal(0, 2, mean.shape), axis=1).astype(np.int64)
        truth = mean[np.arange(mean.shape[0]), target].mean()
        found = evaluate_policy(_log(mean, pick, rng, q_noise=2.0), target)[estimator]
        covered += found.ci_low <= truth <= found.ci_high
    assert 51 <= covered <= 60, f"{estimator} covered the truth {covered} times in 60"


def test_a_good_reward_model_narrows_the_doubly_robust_interval() -> None:
    mean, pick, rng = _world(1)
    target = np.roll(pick, 1).astype(np.int64)
    good = evaluate_policy(_log(mean, pick, np.random.default_rng(5), q_noise=0.1), target)
    poor = evaluate_policy(_log(mean, pick, np.random.default_rng(5), q_noise=8.0), target)
    width = {name: e.ci_high - e.ci_low for name, e in good.items()}
    assert width["dr"] < 0.6 * width["ips"]
    assert good["dr"].ci_high - good["dr"].ci_low < poor["dr"].ci_high - poor["dr"].ci_low


def test_paired_difference_sees_a_better_policy_and_is_zero_for_the_same_one() -> None:
    mean, pick, rng = _world(2, n=20_000)
    log = _log(mean, pick, rng, q_noise=1.0)
    best = np.argmax(mean, axis=1).astype(np.int64)
    worst = np.argmin(mean, axis=1).astype(np.int64)
    better = compare(evaluate_policy(log, best)["dr"], evaluate_policy(log, worst)["dr"])
    assert better.ci_low > 0
    same = compare(evaluate_policy(log, best)["dr"], evaluate_policy(log, best)["dr"])
    assert same.value == 0.0 and same.ci_low == 0.0


def test_a_log_that_does_not_add_up_is_refused() -> None:
    ok = dict(
        action=np.zeros(3, np.int64),
        propensity=np.ones(3),
        reward=np.ones(3),
        q_hat=np.zeros((3, 2)),
    )
    with pytest.raises(SchemaError, match="propensities"):
        OffPolicyLog(**{**ok, "propensity": np.array([0.5, 0.0, 1.0])})
    with pytest.raises(SchemaError, match="one entry per decision"):
        OffPolicyLog(**{**ok, "reward": np.ones(2)})
    with pytest.raises(SchemaError, match="outside"):
        OffPolicyLog(**{**ok, "action": np.array([0, 1, 2])})
    with pytest.raises(SchemaError, match="one action per logged decision"):
        evaluate_policy(OffPolicyLog(**ok), np.zeros(2, np.int64))
