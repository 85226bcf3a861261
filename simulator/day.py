"""A simulated day of streaming decisions: customers arrive over the period following a traffic
profile and are decided in micro-batches by policies.decide_stream under the pacer.

It shows what pacing does (spend vs the target curve, hour by hour) without any broker: the
engine runs the same decide_stream on the same kind of micro-batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from policies.decide import PolicyConfig, Scores, decide_stream
from policies.pacing import Pacer, PacingConfig
from policies.rules import ContactState

__all__ = ["DayResult", "arrival_times", "simulate_paced_day"]

# Relative traffic of each hour of a B2B product's day (UTC): quiet nights, busy office hours.
OFFICE_HOURS_PROFILE = (1, 1, 1, 1, 1, 2, 3, 5, 8, 10, 10, 9, 8, 9, 10, 10, 9, 7, 5, 4, 3, 2, 2, 1)


@dataclass(frozen=True)
class DayResult:
    hours: NDArray[np.float64]
    spent: NDArray[np.float64]  # cumulative at the end of each hour
    target: NDArray[np.float64]
    action: NDArray[np.int64]  # chosen action per customer (0 when not decided or nothing)

    def worst_hourly_error(self) -> float:
        return float(np.max(np.abs(self.spent / self.target - 1.0)))


def arrival_times(
    n: int, profile: tuple[float, ...], period_s: float, seed: int
) -> NDArray[np.float64]:
    """One arrival per customer, spread over the period like the profile."""
    rng = np.random.default_rng([seed, 17])
    weights = np.asarray(profile, dtype=float)
    slot = rng.choice(weights.size, size=n, p=weights / weights.sum())
    return (slot + rng.random(n)) * period_s / weights.size


def simulate_paced_day(
    scores: Scores,
    state: ContactState,
    policy: PolicyConfig,
    pacing: PacingConfig,
    pacer: Pacer,
    arrival_s: NDArray[np.float64],
    step_s: float = 300.0,
) -> DayResult:
    """Run the period micro-batch by micro-batch; report spend at the end of every hour."""
    action = np.zeros(arrival_s.size, dtype=np.int64)
    order = np.argsort(arrival_s, kind="stable")
    spent, t = 0.0, 0.0
    hours, spent_at, target_at = [], [], []
    while t < pacing.period_s:
        in_step = order[(arrival_s[order] >= t) & (arrival_s[order] < t + step_s)]
        if in_step.size:
            allowance = pacer.allowance(pacing, spent, t + step_s)
            decided = decide_stream(
                scores.subset(in_step), state.subset(in_step), policy, pacer, allowance
            )
            action[in_step] = decided.action
            spent += float(decided.cost.sum())
        t += step_s
        pacer = pacer.updated(pacing, spent, t, step_s)
        if t % 3600.0 == 0.0:
            hours.append(t / 3600.0)
            spent_at.append(spent)
            target_at.append(pacing.target_spend(t))
    return DayResult(np.array(hours), np.array(spent_at), np.array(target_at), action)
