"""The synthetic customer base: observable snapshot, latent state and every potential outcome.

Each customer has latent engagement, satisfaction, growth intent, price sensitivity and adoption.
Observable features are noisy counts driven by them, so they predict churn well but not perfectly.
For every action (``do_nothing`` included) the customer's retention and expansion outcome is
drawn once, with common random numbers across actions, so each customer's response type
(persuadable, sure thing, lost cause, sleeping dog) is known exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.optimize import brentq
from scipy.special import expit

from simulator.config import ActionEffect, WorldConfig

__all__ = ["AS_OF", "ResponseType", "World", "build_world", "rng_for"]

AS_OF = datetime(2026, 1, 1, tzinfo=UTC)
INDUSTRIES = ("software", "finance", "healthcare", "retail", "manufacturing", "education")
REGIONS = ("na", "emea", "apac", "latam")
ACQUISITION = ("organic", "paid_search", "partner", "outbound", "referral")
EXPANSION_SHARE_OF_CONTRACT = 0.25

Floats = NDArray[np.float64]
Bools = NDArray[np.bool_]


class ResponseType(IntEnum):
    SURE_THING = 0
    LOST_CAUSE = 1
    PERSUADABLE = 2
    SLEEPING_DOG = 3


# Independent random streams per component, so that generating events never shifts customers.
_STREAMS = {
    "customers": 1,
    "outcomes": 2,
    "experiment": 3,
    "history": 4,
    "events": 5,
    "tx": 6,
    "observation-noise": 7,
}


def rng_for(seed: int, component: str) -> np.random.Generator:
    return np.random.default_rng([seed, _STREAMS[component]])


@dataclass(frozen=True)
class World:
    """Everything known about the simulated base; arrays are indexed [customer, action]."""

    config: WorldConfig
    customers: pd.DataFrame
    latent: dict[str, Floats]
    value: Floats  # 12-month revenue at stake if the customer churns (the contract value)
    cost: Floats  # cost of each action for each customer
    p_retain: Floats  # expected retention probability under each action
    expected_expansion: Floats  # expected expansion revenue under each action
    retained: Bools  # realized potential outcome: retained under each action
    expansion: Floats  # realized potential outcome: expansion revenue under each action
    response_type: NDArray[np.int8]  # ResponseType under each action (column 0 is meaningless)

    @property
    def actions(self) -> tuple[str, ...]:
        return self.config.action_names

    @property
    def n(self) -> int:
        return len(self.customers)

    def true_uplift(self) -> Floats:
        """Expected incremental value of each action vs do_nothing, before cost."""
        retention = (self.p_retain - self.p_retain[:, :1]) * self.value[:, None]
        return retention + (self.expected_expansion - self.expected_expansion[:, :1])


def _zscore(x: Floats) -> Floats:
    std = float(x.std())
    centered: Floats = x - float(x.mean())
    return centered / std if std > 0 else centered


def _sigmoid(x: Floats) -> Floats:
    return np.asarray(expit(x), dtype=np.float64)


def _calibrated_intercept(score: Floats, weight: Floats, target: float) -> float:
    """The intercept a with mean(weight * sigmoid(a + score)) == target (solved by brentq)."""

    def gap(a: float) -> float:
        return float(np.mean(weight * _sigmoid(a + score))) - target

    return float(brentq(gap, -40.0, 40.0, xtol=1e-10))


def _latent_state(
    config: WorldConfig, rng: np.random.Generator
) -> tuple[pd.DataFrame, dict[str, Floats]]:
    n = config.n_customers
    plans = np.array(list(config.plan_shares))
    plan = rng.choice(plans, size=n, p=np.array(list(config.plan_shares.values())))
    plan_rank = np.searchsorted(np.array(["enterprise", "growth", "starter"]), plan).astype(float)
    median_seats = pd.Series(plan).map(config.median_seats).to_numpy(float)
    seats = np.maximum(1, np.round(median_seats * rng.lognormal(0.0, 0.6, n))).astype(np.int64)
    contract_value = seats * pd.Series(plan).map(config.price_per_seat).to_numpy(float)
    tenure_months = np.minimum(120, 1 + rng.gamma(1.5, 18.0, n)).round(1)
    log_value = _zscore(np.log1p(contract_value))
    engagement = rng.normal(size=n) - 0.2 * _zscore(plan_rank)
    satisfaction = rng.normal(size=n)
    latent = {
        "engagement": engagement,
        "satisfaction": satisfaction,
        "dissatisfaction": -satisfaction,
        "growth_intent": rng.normal(size=n) + 0.3 * engagement,
        "price_sensitivity": rng.normal(size=n) - 0.5 * log_value,
        "low_adoption": -(0.6 * engagement + 0.8 * rng.normal(size=n)),
        "log_value": log_value,
        "billing_issue": (rng.random(n) < 0.06).astype(float),
        "log_tenure": _zscore(np.log(tenure_months)),
    }
    frame = pd.DataFrame(
        {
            "plan": plan,
            "seats": seats,
            "contract_value": contract_value.round(2),
            "tenure_months": tenure_months,
        }
    )
    return frame, latent


def _churn_score(latent: dict[str, Floats]) -> Floats:
    return (
        -1.0 * latent["engagement"]
        - 0.9 * latent["satisfaction"]
        + 1.2 * latent["billing_issue"]
        - 0.35 * latent["log_tenure"]
        + 0.25 * latent["price_sensitivity"]
    )


def _driver_score(drivers: dict[str, float], latent: dict[str, Floats], n: int) -> Floats:
    score = np.zeros(n)
    for name, weight in drivers.items():
        score += weight * latent[name]
    return score


def _observables(
    latent: dict[str, Floats], frame: pd.DataFrame, config: WorldConfig, rng: np.random.Generator
) -> pd.DataFrame:
    n = len(frame)
    latent = _as_observed(latent, config)
    e, s = latent["engagement"], latent["satisfaction"]
    g, ps = latent["growth_intent"], latent["price_sensitivity"]
    seats = frame["seats"].to_numpy(float)
    tickets = rng.poisson(0.6 * np.exp(-0.7 * s) * seats**0.3)
    severity = np.where(
        tickets > 0, np.clip(np.round(2.2 - 0.8 * s + rng.normal(0, 0.7, n)), 1, 4), 0
    )
    nps = np.clip(np.round(7 + 1.8 * s + rng.normal(0, 1.2, n)), 0, 10)
    nps[rng.random(n) < 0.4] = np.nan  # most accounts never answer the survey
    days_to_renewal = rng.integers(1, 366, n)
    observed = {
        "logins_30d": rng.poisson(6 * np.sqrt(seats) * np.exp(0.7 * e)),
        "features_used_30d": np.minimum(30, rng.poisson(3 * np.exp(-0.6 * latent["low_adoption"]))),
        "support_tickets_90d": tickets,
        "max_ticket_severity_90d": severity.astype(np.int64),
        "billing_failures_90d": rng.poisson(1.5 * latent["billing_issue"] + 0.02),
        "nps_last": nps,
        "pricing_page_views_30d": rng.poisson(0.5 * np.exp(0.6 * g + 0.6 * ps)),
        "seats_added_90d": rng.poisson(0.3 * seats**0.5 * np.exp(0.8 * g)),
        "seats_removed_90d": rng.poisson(0.2 * seats**0.5 * np.exp(-0.6 * s - 0.4 * e)),
        "days_since_last_login": np.round(rng.exponential(2.0 * np.exp(-0.9 * e))).astype(np.int64),
        "exports_30d": rng.poisson(0.2 * np.exp(0.5 * _zscore(_churn_score(latent)))),
        "admin_changes_30d": rng.poisson(0.3 * np.exp(0.3 * e)),
        "days_to_renewal": days_to_renewal,
        "renewal_date": pd.Timestamp(AS_OF) + pd.to_timedelta(days_to_renewal, unit="D"),
        "industry": rng.choice(np.array(INDUSTRIES), n),
        "region": rng.choice(np.array(REGIONS), n),
        "acquisition_channel": rng.choice(np.array(ACQUISITION), n),
    }
    for channel, rate in config.consent_rates.items():
        observed[f"consent_{channel}"] = rng.random(n) < rate
    return pd.concat([frame, pd.DataFrame(observed)], axis=1)


_CONTINUOUS_TRAITS = (
    "engagement",
    "satisfaction",
    "growth_intent",
    "price_sensitivity",
    "low_adoption",
)


def _as_observed(latent: dict[str, Floats], config: WorldConfig) -> dict[str, Floats]:
    """The traits as the observed features see them: with ``observation_noise``, each continuous
    trait blurred by its own noise (its own random stream, so a world without noise is the
    same world as before the setting existed)."""
    if config.observation_noise == 0.0:
        return latent
    rng = rng_for(config.seed, "observation-noise")
    blurred = dict(latent)
    for name in _CONTINUOUS_TRAITS:
        blurred[name] = latent[name] + config.observation_noise * rng.normal(size=latent[name].size)
    blurred["dissatisfaction"] = -blurred["satisfaction"]
    return blurred


def _customer_ids(n: int) -> NDArray[np.str_]:
    return np.char.add("C", np.char.zfill(np.arange(n).astype(str), 8))


def build_world(config: WorldConfig) -> World:
    """Generate the base, its snapshot and every potential outcome, deterministically by seed."""
    rng = rng_for(config.seed, "customers")
    frame, latent = _latent_state(config, rng)
    n = config.n_customers
    churn_score = _churn_score(latent)
    latent["risk"] = _zscore(churn_score)
    p_churn0 = _sigmoid(
        _calibrated_intercept(churn_score, np.ones(n), config.baseline_churn_rate) + churn_score
    )
    customers = _observables(latent, frame, config, rng)
    customers.insert(0, "customer_id", _customer_ids(n))
    customers["snapshot_at"] = pd.Timestamp(AS_OF)

    value = customers["contract_value"].to_numpy(float)
    outcome_rng = rng_for(config.seed, "outcomes")
    churn_draw = outcome_rng.random(n)
    expansion_draw = outcome_rng.random(n)
    would_churn = churn_draw < p_churn0
    base_conversion = _sigmoid(
        _calibrated_intercept(latent["growth_intent"], np.ones(n), config.base_expansion_rate)
        + latent["growth_intent"]
    )
    expansion_amount = value * EXPANSION_SHARE_OF_CONTRACT

    columns = [
        _do_nothing_column(would_churn, p_churn0, base_conversion, expansion_draw, expansion_amount)
    ]
    for action in config.actions:
        columns.append(
            _action_column(
                action,
                latent,
                p_churn0,
                would_churn,
                base_conversion,
                expansion_draw,
                expansion_amount,
                outcome_rng,
                value,
            )
        )
    return World(
        config=config,
        customers=customers,
        latent=latent,
        value=value,
        cost=np.column_stack([c.cost for c in columns]),
        p_retain=np.column_stack([c.p_retain for c in columns]),
        expected_expansion=np.column_stack([c.expected_expansion for c in columns]),
        retained=np.column_stack([c.retained for c in columns]),
        expansion=np.column_stack([c.expansion for c in columns]),
        response_type=np.column_stack([c.response_type for c in columns]).astype(np.int8),
    )


@dataclass(frozen=True)
class _Column:
    cost: Floats
    p_retain: Floats
    expected_expansion: Floats
    retained: Bools
    expansion: Floats
    response_type: NDArray[np.int8]


def _do_nothing_column(
    would_churn: Bools, p_churn0: Floats, conversion: Floats, expansion_draw: Floats, amount: Floats
) -> _Column:
    retained = ~would_churn
    response = np.where(retained, ResponseType.SURE_THING, ResponseType.LOST_CAUSE).astype(np.int8)
    return _Column(
        cost=np.zeros(len(p_churn0)),
        p_retain=1.0 - p_churn0,
        expected_expansion=(1.0 - p_churn0) * conversion * amount,
        retained=retained,
        expansion=np.where(retained & (expansion_draw < conversion), amount, 0.0),
        response_type=response,
    )


def _share_probability(share: float, weight: Floats, score: Floats) -> Floats:
    if share == 0.0:
        return np.zeros_like(score)
    return _sigmoid(_calibrated_intercept(score, weight, share) + score)


def _action_column(
    action: ActionEffect,
    latent: dict[str, Floats],
    p_churn0: Floats,
    would_churn: Bools,
    base_conversion: Floats,
    expansion_draw: Floats,
    amount: Floats,
    rng: np.random.Generator,
    value: Floats,
) -> _Column:
    n = len(p_churn0)
    q = _share_probability(
        action.persuadable_share, p_churn0, _driver_score(action.persuadable_drivers, latent, n)
    )
    d = _share_probability(
        action.sleeping_dog_share,
        1.0 - p_churn0,
        _driver_score(action.sleeping_dog_drivers, latent, n),
    )
    draw = rng.random(n)
    persuadable = would_churn & (draw < q)
    sleeping_dog = ~would_churn & (draw < d)
    retained = (~would_churn & ~sleeping_dog) | persuadable
    response = np.select(
        [persuadable, sleeping_dog, would_churn],
        [ResponseType.PERSUADABLE, ResponseType.SLEEPING_DOG, ResponseType.LOST_CAUSE],
        default=ResponseType.SURE_THING,
    ).astype(np.int8)
    lift = _share_probability(
        action.expansion_rate,
        1.0 - base_conversion,
        _driver_score(action.expansion_drivers, latent, n),
    )
    conversion = base_conversion + (1.0 - base_conversion) * lift
    p_retain = (1.0 - p_churn0) * (1.0 - d) + p_churn0 * q
    return _Column(
        cost=action.cost_fixed + action.cost_pct_of_contract * value,
        p_retain=p_retain,
        expected_expansion=p_retain * conversion * amount,
        retained=retained,
        expansion=np.where(retained & (expansion_draw < conversion), amount, 0.0),
        response_type=response,
    )
