"""The simulated world behaves as documented: shares, effects, bias, determinism, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from policies.errors import BudgetError, ConfigError
from simulator.config import WorldConfig, validated
from simulator.datasets import legacy_history, randomized_experiment, transactions
from simulator.truth import oracle_policy, score_policy
from simulator.world import ResponseType, World, build_world

SEED = 7
N = 200_000


@pytest.fixture(scope="module")
def world() -> World:
    return build_world(WorldConfig(n_customers=N, seed=SEED))


def test_same_seed_same_world_other_seed_other_world() -> None:
    a = build_world(WorldConfig(n_customers=2_000, seed=3))
    b = build_world(WorldConfig(n_customers=2_000, seed=3))
    c = build_world(WorldConfig(n_customers=2_000, seed=4))
    assert a.customers.equals(b.customers)
    assert np.array_equal(a.retained, b.retained) and np.array_equal(a.expansion, b.expansion)
    assert not np.array_equal(a.retained, c.retained)


def test_response_types_appear_in_their_configured_shares(world: World) -> None:
    churn = world.config.baseline_churn_rate
    tolerance = 4 * np.sqrt(0.25 / world.n)  # 4 standard errors of a share
    for j, action in enumerate(world.config.actions, start=1):
        shares = np.bincount(world.response_type[:, j], minlength=4) / world.n
        expected = {
            ResponseType.PERSUADABLE: action.persuadable_share,
            ResponseType.SLEEPING_DOG: action.sleeping_dog_share,
            ResponseType.LOST_CAUSE: churn - action.persuadable_share,
            ResponseType.SURE_THING: 1 - churn - action.sleeping_dog_share,
        }
        for kind, share in expected.items():
            assert shares[kind] == pytest.approx(share, abs=tolerance), (action.name, kind.name)


def test_randomized_ate_lies_within_its_95ci_of_the_true_ate(world: World) -> None:
    data = randomized_experiment(world)
    control = data.loc[data["treatment"] == "do_nothing", "retained"].to_numpy(float)
    for j, action in enumerate(world.actions[1:], start=1):
        treated = data.loc[data["treatment"] == action, "retained"].to_numpy(float)
        estimate = treated.mean() - control.mean()
        se = np.sqrt(treated.var(ddof=1) / treated.size + control.var(ddof=1) / control.size)
        truth = float((world.retained[:, j].astype(float) - world.retained[:, 0]).mean())
        assert abs(estimate - truth) <= 1.96 * se, (action, estimate, truth, se)


def test_legacy_log_gives_a_biased_naive_estimate(world: World) -> None:
    log = legacy_history(world)
    called = (log["treatment"] == "account_manager_call").to_numpy()
    untouched = (log["treatment"] == "do_nothing").to_numpy()
    y = log["retained"].to_numpy(float)
    naive = y[called].mean() - y[untouched].mean()
    se = np.sqrt(y[called].var(ddof=1) / called.sum() + y[untouched].var(ddof=1) / untouched.sum())
    call = world.actions.index("account_manager_call")
    true_att = float(
        (world.retained[called, call].astype(float) - world.retained[called, 0]).mean()
    )
    assert true_att > 0.05, "calls truly help the accounts the legacy rule called"
    assert naive + 1.96 * se < 0, "yet the naive comparison says they hurt"
    assert true_att - naive > 0.2


def _risk_auc(world: World) -> float:
    """ROC-AUC of a logistic regression of churn on the observed counts (half fit, half scored)."""
    columns = ["logins_30d", "support_tickets_90d", "days_since_last_login", "seats_removed_90d"]
    x = np.log1p(world.customers[columns].to_numpy(float))
    churned = ~world.retained[:, 0]
    half = world.n // 2
    model = LogisticRegression(max_iter=1_000).fit(x[:half], churned[:half])
    return float(roc_auc_score(churned[half:], model.predict_proba(x[half:])[:, 1]))


def test_observation_noise_blurs_the_features_not_the_effects() -> None:
    plain = build_world(WorldConfig(n_customers=40_000, seed=5))
    same = build_world(WorldConfig(n_customers=40_000, seed=5, observation_noise=0.0))
    noisy = build_world(WorldConfig(n_customers=40_000, seed=5, observation_noise=1.0))
    assert plain.customers.equals(same.customers), "no noise: the world as before the setting"
    assert np.array_equal(plain.p_retain, noisy.p_retain), "true effects follow the traits"
    assert plain.customers["contract_value"].equals(noisy.customers["contract_value"])
    assert _risk_auc(noisy) < _risk_auc(plain) - 0.03, "the features say less about churn"


def test_legacy_confounding_leans_on_risk_no_feature_shows() -> None:
    def called_risk(confounding: float) -> float:
        world = build_world(WorldConfig(n_customers=40_000, seed=5, legacy_confounding=confounding))
        called = (legacy_history(world)["treatment"] == "account_manager_call").to_numpy()
        return float(world.latent["risk"][called].mean())

    assert called_risk(1.0) > called_risk(0.0) + 0.3


def test_true_effects_are_not_a_function_of_risk(world: World) -> None:
    p_churn = 1 - world.p_retain[:, 0]
    for j in range(1, len(world.actions)):
        uplift = world.p_retain[:, j] - world.p_retain[:, 0]
        rho = spearmanr(uplift, p_churn).statistic
        assert abs(rho) < 0.8, (world.actions[j], rho)


def test_treat_by_risk_scores_clearly_below_the_oracle_at_equal_budget(world: World) -> None:
    budget = 0.05 * world.n * 200.0  # calls for 5% of the base
    call = world.actions.index("account_manager_call")
    riskiest = np.argsort(-(1 - world.p_retain[:, 0]))[: int(budget // 200.0)]
    by_risk = np.zeros(world.n, dtype=np.int64)
    by_risk[riskiest] = call
    risk_score = score_policy(world, by_risk)
    oracle_score = score_policy(world, oracle_policy(world, budget))
    assert risk_score.spend <= budget and oracle_score.spend <= budget
    assert oracle_score.net_value > 0
    assert risk_score.net_value < 0.5 * oracle_score.net_value
    assert oracle_score.wasted_spend == 0
    assert risk_score.wasted_spend_share > 0.5


def test_observable_features_predict_churn_well_but_not_perfectly(world: World) -> None:
    features = world.customers.select_dtypes("number").fillna(-1).to_numpy(float)
    x = np.log1p(np.abs(features)) * np.sign(features)
    y = ~world.retained[:, 0]
    half = world.n // 2
    model = LogisticRegression(max_iter=2_000).fit(x[:half], y[:half])
    auc = roc_auc_score(y[half:], model.predict_proba(x[half:])[:, 1])
    assert 0.72 <= auc <= 0.88, auc


def test_transactions_follow_the_history_window(world: World) -> None:
    small = build_world(WorldConfig(n_customers=3_000, seed=SEED))
    tx = transactions(small)
    assert (tx["amount"] > 0).all()
    assert tx["occurred_at"].max() <= small.customers["snapshot_at"].iloc[0]
    per_customer = tx.groupby("customer_id").size()
    assert per_customer.median() >= 3, "enough repeat payments for BG/NBD"


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"sessions_per_day": -1.0}, "sessions_per_day"),
        (
            {"plan_shares": {"starter": 0.5, "growth": 0.2, "enterprise": 0.2}},
            "plan_shares must sum to 1",
        ),
        ({"baseline_churn_rate": 1.2}, "baseline_churn_rate"),
        ({"n_customers": 0}, "n_customers"),
    ],
)
def test_impossible_parameters_name_the_parameter(params: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        validated(**params)


def test_negative_budget_is_refused(world: World) -> None:
    with pytest.raises(BudgetError, match="budget"):
        oracle_policy(world, -1.0)


def test_experiment_probabilities_are_checked(world: World) -> None:
    with pytest.raises(ConfigError, match="sum to 1"):
        randomized_experiment(world, {"do_nothing": 0.5, "retention_email": 0.2})
    with pytest.raises(ConfigError, match="control"):
        randomized_experiment(world, {"do_nothing": 0.0, "retention_email": 1.0})
