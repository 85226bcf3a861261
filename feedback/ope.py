"""Off-policy evaluation: what a candidate policy would earn, from the engine's logged decisions.

Estimators (per logged decision i with action a_i, logged propensity p_i, reward r_i, the
candidate's action pi_i and a reward model q(x, a)):

- IPS:   mean( 1[a_i = pi_i] / p_i x r_i )
- SNIPS: sum( w_i r_i ) / sum( w_i ),   w_i = 1[a_i = pi_i] / p_i
- DR:    mean( q(x_i, pi_i) + w_i x (r_i - q(x_i, a_i)) )

Confidence intervals are normal intervals on the per-decision terms (for SNIPS, its influence
terms), so two policies evaluated on the same log can be compared pairwise (``compare``): the
difference of their terms has a CI of its own, which is what promotion needs.

Why not Open Bandit Pipeline: its last release (obp 0.5.7) requires Python < 3.11, and the
newest one that installs on 3.11 (0.4.1) pulls in PyTorch and predates numpy 2. The three
estimators are a few lines each; their correctness is checked against the simulator's ground
truth in tests/model_export/test_ope.py.

Only the treatment and exploration arms enter: the holdout is a separate randomization whose
customers never get the logging policy's action.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.stats import norm

from policies.errors import SchemaError

__all__ = ["Estimate", "OffPolicyLog", "compare", "evaluate_policy"]

Floats = NDArray[np.float64]


@dataclass(frozen=True)
class OffPolicyLog:
    """Logged decisions of the treatment and exploration arms, aligned row by row."""

    action: NDArray[np.int64]
    propensity: Floats
    reward: Floats
    q_hat: Floats  # reward model [decision, action]

    def __post_init__(self) -> None:
        n = self.action.shape[0]
        if self.propensity.shape != (n,) or self.reward.shape != (n,):
            raise SchemaError("action, propensity and reward must have one entry per decision")
        if self.q_hat.ndim != 2 or self.q_hat.shape[0] != n:
            raise SchemaError("q_hat must be [decision, action]")
        if n and (np.any(self.propensity <= 0) or np.any(self.propensity > 1)):
            raise SchemaError("logged propensities must lie in (0, 1]")
        if n and (self.action.min() < 0 or self.action.max() >= self.q_hat.shape[1]):
            raise SchemaError("a logged action is outside the reward model's actions")


@dataclass(frozen=True)
class Estimate:
    estimator: str
    value: float
    ci_low: float
    ci_high: float
    n: int
    terms: Floats  # per-decision terms (mean = value); kept for paired comparisons

    def summary(self) -> dict[str, float | int | str]:
        return {
            "estimator": self.estimator,
            "value": self.value,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "n": self.n,
        }


def _estimate(name: str, terms: Floats, alpha: float) -> Estimate:
    n = terms.size
    value = float(terms.mean()) if n else float("nan")
    half = float(norm.ppf(1 - alpha / 2) * terms.std(ddof=1) / np.sqrt(n)) if n > 1 else np.inf
    return Estimate(name, value, value - half, value + half, n, terms)


def evaluate_policy(
    log: OffPolicyLog, target: NDArray[np.int64], alpha: float = 0.05
) -> dict[str, Estimate]:
    """IPS, SNIPS and DR estimates of the mean reward per decision of the ``target`` actions."""
    if target.shape != log.action.shape:
        raise SchemaError("the target policy needs one action per logged decision")
    rows = np.arange(target.size)
    weight = (log.action == target) / log.propensity
    ips = weight * log.reward
    mean_weight = weight.mean() if target.size else 1.0
    snips_value = float(ips.sum() / weight.sum()) if weight.sum() > 0 else 0.0
    # The influence terms of the ratio estimator: their mean is the SNIPS value.
    snips = snips_value + weight * (log.reward - snips_value) / max(mean_weight, 1e-12)
    dr = log.q_hat[rows, target] + weight * (log.reward - log.q_hat[rows, log.action])
    return {
        "ips": _estimate("ips", ips, alpha),
        "snips": _estimate("snips", snips, alpha),
        "dr": _estimate("dr", dr, alpha),
    }


def compare(challenger: Estimate, champion: Estimate, alpha: float = 0.05) -> Estimate:
    """The challenger's value minus the champion's, paired on the same logged decisions."""
    if challenger.terms.shape != champion.terms.shape:
        raise SchemaError("both estimates must come from the same log")
    return _estimate(f"{challenger.estimator} difference", challenger.terms - champion.terms, alpha)
