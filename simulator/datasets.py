"""Data sets drawn from the world: a randomized experiment, a biased historical log, and the
transaction history for RFM and BG/NBD + Gamma-Gamma lifetime value."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy.special import expit

from policies.errors import ConfigError
from simulator.world import AS_OF, World, rng_for

__all__ = ["legacy_history", "randomized_experiment", "transactions"]


def _outcome_frame(world: World, treatment: np.ndarray, propensity: np.ndarray) -> pd.DataFrame:
    idx = np.arange(world.n)
    frame = world.customers.copy()
    frame["treatment"] = np.asarray(world.actions)[treatment]
    frame["treatment_index"] = treatment
    frame["propensity"] = propensity
    frame["retained"] = world.retained[idx, treatment]
    frame["expansion_revenue"] = world.expansion[idx, treatment]
    frame["cost"] = world.cost[idx, treatment]
    return frame


def randomized_experiment(
    world: World, probabilities: Mapping[str, float] | None = None
) -> pd.DataFrame:
    """Every customer gets an action drawn at random with known probabilities (control included).

    Default: half of the base in control (do_nothing), the rest spread evenly over the actions.
    """
    actions = world.actions
    if probabilities is None:
        rest = 0.5 / (len(actions) - 1)
        probabilities = {a: (0.5 if a == "do_nothing" else rest) for a in actions}
    unknown = set(probabilities) - set(actions)
    if unknown:
        raise ConfigError(f"probabilities name unknown actions: {sorted(unknown)}")
    p = np.array([probabilities.get(a, 0.0) for a in actions], dtype=float)
    if np.any(p < 0) or abs(p.sum() - 1.0) > 1e-9:
        raise ConfigError(f"probabilities must be >= 0 and sum to 1 (got {p.sum():.4f})")
    if p[0] <= 0:
        raise ConfigError("probabilities must give do_nothing (the control group) a positive share")
    rng = rng_for(world.config.seed, "experiment")
    treatment = rng.choice(len(actions), size=world.n, p=p)
    return _outcome_frame(world, treatment, p[treatment])


def legacy_history(
    world: World, call_share: float = 0.05, email_share: float = 0.15
) -> pd.DataFrame:
    """What a legacy rule did: call the accounts that look riskiest, email the next band.

    The legacy risk score is built from observable warning signs, so treatment is confounded with
    churn risk: comparing treated with untreated customers in this log is biased (the naive
    estimate of a call's effect is far below its truth), which is what uplift learning on
    randomized data fixes. With ``legacy_confounding`` the rule also leans on the churn risk no
    feature shows, and no adjustment for the features removes the bias.
    """
    if not 0 <= call_share <= 1 or not 0 <= email_share <= 1 or call_share + email_share > 1:
        raise ConfigError("call_share and email_share must lie in [0, 1] and sum to at most 1")
    c = world.customers
    rng = rng_for(world.config.seed, "history")
    warning = (
        -np.log1p(c["logins_30d"].to_numpy(float))
        + 0.5 * c["support_tickets_90d"].to_numpy(float)
        + 0.8 * c["billing_failures_90d"].to_numpy(float)
        + 0.3 * c["exports_30d"].to_numpy(float)
        + 0.3 * rng.normal(size=world.n)
    )
    unobserved = world.config.legacy_confounding * float(warning.std()) * world.latent["risk"]
    warning = warning + unobserved
    rank = np.argsort(np.argsort(-warning))
    n_call, n_email = int(call_share * world.n), int(email_share * world.n)
    actions = list(world.actions)
    treatment = np.zeros(world.n, dtype=np.int64)
    treatment[rank < n_call] = actions.index("account_manager_call")
    treatment[(rank >= n_call) & (rank < n_call + n_email)] = actions.index("retention_email")
    # A deterministic rule: the log carries no usable propensities (1 for what was done).
    return _outcome_frame(world, treatment, np.ones(world.n))


def transactions(world: World) -> pd.DataFrame:
    """Payments over the history window, from the BG/NBD + Gamma-Gamma generative story.

    Each account pays at its own Poisson rate until it silently drops out (a geometric number of
    payments); each payment's amount scatters around the account's own mean. Rates and means
    follow engagement and contract value, so RFM and CLV models see structure.
    """
    cfg, c = world.config, world.customers
    rng = rng_for(cfg.seed, "tx")
    n, days = world.n, cfg.history_days
    tenure_days = np.minimum(days, (c["tenure_months"].to_numpy(float) * 30.4).astype(int))
    rate = rng.gamma(2.0, 0.02, n) * np.exp(0.4 * world.latent["engagement"])  # payments per day
    dropout = expit(-3.0 - 0.8 * world.latent["satisfaction"])  # per payment
    mean_amount = world.value / 12.0 * rng.gamma(8.0, 1.0 / 8.0, n)
    lifetime_payments = rng.geometric(dropout)
    expected = np.minimum(rng.poisson(rate * tenure_days), lifetime_payments)
    owner = np.repeat(np.arange(n), expected)
    start = AS_OF - pd.to_timedelta(tenure_days, unit="D")
    offsets = rng.random(owner.size) * tenure_days[owner]
    # Dropouts stop early: squeeze their payments into the part of the window they stayed.
    stayed = np.where(
        lifetime_payments[owner] <= expected[owner], rng.uniform(0.2, 1.0, owner.size), 1.0
    )
    at = start[owner] + pd.to_timedelta(np.floor(offsets * stayed), unit="D")
    amount = np.round(mean_amount[owner] * rng.gamma(20.0, 1.0 / 20.0, owner.size), 2)
    frame = pd.DataFrame(
        {"customer_id": c["customer_id"].to_numpy()[owner], "occurred_at": at, "amount": amount}
    )
    return frame.sort_values(["customer_id", "occurred_at"], kind="stable").reset_index(drop=True)
