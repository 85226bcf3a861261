"""Holdout and exploration arms, and the propensity every decision logs.

A customer's arm is a stable hash of (experiment, customer_id), never a per-event coin: the same
customer stays in the holdout for the whole experiment. Exploration picks uniformly among the
eligible actions (do_nothing included) with a hash of the decision key, so a replay of the same
trigger explores the same way.

Logged propensity: among non-holdout customers the logging policy is the mixture
``t/(t+e) x policy + e/(t+e) x uniform(eligible)`` (t = treatment share, e = exploration
share), so P(chosen action | customer) = t/(t+e) x [chosen == policy's pick] + e/(t+e) / k,
where for an exploration customer "policy's pick" is what the treatment policy would have chosen
at the same price (policies.decide logs it). Holdout decisions log propensity 1 for do_nothing;
off-policy evaluation uses the treatment and exploration arms (feedback.ope).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from enum import IntEnum
from typing import Annotated

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Arm", "ArmConfig", "assign_arms", "explore_pick", "propensity", "stable_uniform"]

Share = Annotated[float, Field(ge=0.0, le=1.0)]


class Arm(IntEnum):
    TREATMENT = 0
    HOLDOUT = 1
    EXPLORE = 2

    @property
    def label(self) -> str:
        return self.name.lower()


class ArmConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    experiment: str = Field(default="nba-default", min_length=1)
    holdout_share: Share = 0.10
    explore_share: Share = 0.05

    @model_validator(mode="after")
    def _shares(self) -> ArmConfig:
        if self.holdout_share + self.explore_share >= 1.0:
            raise ValueError("holdout_share + explore_share must be below 1")
        return self


def stable_uniform(keys: Sequence[str], salt: str) -> NDArray[np.float64]:
    """A number in [0, 1) per key from BLAKE2b of (salt, key): stable across runs and machines."""
    out = np.empty(len(keys))
    prefix = salt.encode() + b"\x1f"
    for i, key in enumerate(keys):
        digest = hashlib.blake2b(prefix + key.encode(), digest_size=8).digest()
        out[i] = int.from_bytes(digest, "big") / 2.0**64
    return out


def assign_arms(customer_ids: Sequence[str], config: ArmConfig) -> NDArray[np.int8]:
    u = stable_uniform(customer_ids, config.experiment)
    arms = np.full(len(customer_ids), Arm.TREATMENT, dtype=np.int8)
    arms[u < config.holdout_share] = Arm.HOLDOUT
    arms[(u >= config.holdout_share) & (u < config.holdout_share + config.explore_share)] = (
        Arm.EXPLORE
    )
    return arms


def explore_pick(
    decision_keys: Sequence[str], eligible: NDArray[np.bool_], config: ArmConfig
) -> NDArray[np.int64]:
    """A uniformly random eligible action per decision (do_nothing always counts as eligible)."""
    allowed = eligible.copy()
    allowed[:, 0] = True
    u = stable_uniform(decision_keys, f"{config.experiment}\x1fexplore")
    k = allowed.sum(axis=1)
    nth = np.minimum((u * k).astype(np.int64), k - 1)
    ranks = np.cumsum(allowed, axis=1) - 1
    picked: NDArray[np.int64] = np.argmax(allowed & (ranks == nth[:, None]), axis=1).astype(
        np.int64
    )
    return picked


def propensity(
    chosen: NDArray[np.int64],
    policy_pick: NDArray[np.int64],
    eligible: NDArray[np.bool_],
    arms: NDArray[np.int8],
    config: ArmConfig,
) -> NDArray[np.float64]:
    """P(chosen | customer) under the logging policy (see the module docstring)."""
    t = 1.0 - config.holdout_share - config.explore_share
    e = config.explore_share
    k = eligible.sum(axis=1) + (~eligible[:, 0]).astype(int)  # do_nothing is always allowed
    p = t / (t + e) * (chosen == policy_pick) + e / (t + e) / k
    return np.where(arms == Arm.HOLDOUT, 1.0, p)
