"""Streaming budget pacing: spread a period's budget over the period like a target curve.

The engine decides micro-batch by micro-batch and cannot see tomorrow's customers, so it prices
the budget: an action is taken only if ``EV - lam x cost > 0`` (the same rule as the batch
allocator, see policies.allocation.choose_at_price). After each step the price moves toward the
target spend curve, multiplicatively: ahead of the curve -> dearer, behind -> cheaper. A hard
cap keeps spend from running ahead of the curve by more than ``max_ahead``, so early traffic
cannot exhaust the budget and late high-value customers are still served.

The initial price comes from a sample of opportunities (e.g. yesterday's) with
``initial_price``; the ledger that records real spend belongs to the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, field_validator

from policies.allocation import price_for_budget

__all__ = ["Pacer", "PacingConfig", "initial_price"]

Floats = NDArray[np.float64]


class PacingConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    budget: Annotated[float, Field(ge=0.0)]
    period_s: Annotated[float, Field(gt=0.0)] = 86_400.0
    # Relative weight of each equal slice of the period (e.g. 24 hourly traffic weights);
    # an empty profile means spend evenly in time.
    profile: tuple[Annotated[float, Field(ge=0.0)], ...] = ()
    gain: Annotated[float, Field(gt=0.0)] = 1.0
    max_ahead: Annotated[float, Field(ge=0.0)] = 0.03
    min_price: Annotated[float, Field(gt=0.0)] = 1e-4

    @field_validator("profile")
    @classmethod
    def _some_weight(cls, profile: tuple[float, ...]) -> tuple[float, ...]:
        if profile and sum(profile) <= 0:
            raise ValueError("profile must have a positive total weight")
        return profile

    def target_spend(self, elapsed_s: float) -> float:
        """Cumulative spend the curve asks for after ``elapsed_s`` seconds of the period."""
        share = min(max(elapsed_s / self.period_s, 0.0), 1.0)
        if not self.profile:
            return self.budget * share
        weights = np.asarray(self.profile, dtype=float)
        cumulative = np.concatenate([[0.0], np.cumsum(weights) / weights.sum()])
        grid = np.linspace(0.0, 1.0, weights.size + 1)
        return self.budget * float(np.interp(share, grid, cumulative))


@dataclass(frozen=True)
class Pacer:
    """The pacing state: the current price of a budget dollar."""

    price: float

    def allowance(self, config: PacingConfig, spent: float, elapsed_s: float) -> float:
        """How much more may be spent right now (budget left, capped just ahead of the curve)."""
        cap = min(config.budget, config.target_spend(elapsed_s) * (1.0 + config.max_ahead))
        return max(0.0, cap - spent)

    def updated(self, config: PacingConfig, spent: float, elapsed_s: float, step_s: float) -> Pacer:
        """The price after a step: up when spend is ahead of the curve, down when behind.

        The error is measured in units of the spend the curve plans for one step, so the
        controller reacts alike at any budget size.
        """
        target = config.target_spend(elapsed_s)
        per_step = max(config.target_spend(elapsed_s + step_s) - target, config.budget * 1e-6, 1e-9)
        error = float(np.clip((spent - target) / per_step, -5.0, 5.0))
        return Pacer(
            price=max(config.min_price, self.price * float(np.exp(config.gain * error / 5.0)))
        )


def initial_price(
    value: Floats, cost: Floats, eligible: NDArray[np.bool_], budget_for_sample: float
) -> Pacer:
    """The price that would spend ``budget_for_sample`` on a sample of opportunities."""
    return Pacer(price=max(price_for_budget(value, cost, eligible, budget_for_sample), 1e-4))
