"""One decision per customer: segments, expected value, eligibility, arms, allocation, reasons.

``decide_batch`` allocates a whole base under a budget (policies.allocation.allocate_dual);
``decide_stream`` decides one micro-batch at the pacer's current price and within the
allowance the ledger reports. Both rank actions by the same expected value and, at price 0 with
budget to spare, choose the same action. Deterministic given the inputs: arms and exploration
come from stable hashes of the customer and of the decision key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from enum import IntEnum

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from policies.allocation import (
    DO_NOTHING,
    Capacity,
    allocate_dual,
    capacity_vector,
    choose_at_price,
    enforce_limits,
)
from policies.arms import Arm, ArmConfig, assign_arms, explore_pick, propensity
from policies.catalog import Catalog, default_catalog
from policies.errors import SchemaError
from policies.pacing import Pacer
from policies.rules import Block, ContactRules, ContactState, eligibility
from policies.segments import SEGMENTS, SegmentThresholds, assign_segments
from policies.value import expected_value, validate_scores

__all__ = [
    "CAPACITY_EXHAUSTED",
    "Decisions",
    "Outcome",
    "PolicyConfig",
    "Scores",
    "decide_batch",
    "decide_stream",
    "opportunities",
]

Floats = NDArray[np.float64]
# Reason code prefix of an action nobody could get when the decision was made.
CAPACITY_EXHAUSTED = "capacity_exhausted"


class PolicyConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = Field(default="policy-1", min_length=1)
    # What customer_value is, as the explanation names it (a project's value declaration).
    value_source: str = Field(default="contract value", min_length=1)
    catalog: Catalog = Field(default_factory=default_catalog)
    segments: SegmentThresholds = SegmentThresholds()
    contact: ContactRules = ContactRules()
    arms: ArmConfig = ArmConfig()


class Outcome(IntEnum):
    """The main reason for what was decided."""

    BEST_EV = 0  # the eligible action with the best (priced) expected value
    HOLDOUT = 1  # control group: never acted on
    EXPLORE = 2  # exploration arm: uniform among eligible actions
    NO_POSITIVE_EV = 3  # no eligible action is worth its cost
    BELOW_PRICE = 4  # worth its cost, but not at the pacing price of the budget
    LIMIT_REACHED = 5  # budget or channel capacity ran out for this action


@dataclass(frozen=True)
class Scores:
    """What the models say about each customer in the batch (arrays are [customer, action])."""

    customer_ids: Sequence[str]
    decision_keys: Sequence[str]
    p_churn: Floats
    uplift_retention: Floats
    uplift_expansion: Floats
    customer_value: Floats
    engagement: Floats

    def __post_init__(self) -> None:
        n = len(self.customer_ids)
        if len(self.decision_keys) != n or self.engagement.shape != (n,):
            raise SchemaError(
                "customer_ids, decision_keys and engagement must have one entry per customer"
            )
        if np.any(~np.isfinite(self.engagement)):
            raise SchemaError("engagement must be finite")

    def subset(self, rows: NDArray[np.int64]) -> Scores:
        return Scores(
            customer_ids=[self.customer_ids[i] for i in rows.tolist()],
            decision_keys=[self.decision_keys[i] for i in rows.tolist()],
            p_churn=self.p_churn[rows],
            uplift_retention=self.uplift_retention[rows],
            uplift_expansion=self.uplift_expansion[rows],
            customer_value=self.customer_value[rows],
            engagement=self.engagement[rows],
        )


@dataclass(frozen=True)
class Decisions:
    """Everything decided for a batch; reasons are rendered on demand (cheap for big batches)."""

    catalog: Catalog
    policy_version: str
    value_source: str
    action: NDArray[np.int64]
    arm: NDArray[np.int8]
    propensity: Floats
    outcome: NDArray[np.int8]
    segment: NDArray[np.int8]
    expected_value: Floats  # EV of the chosen action (0 for do_nothing)
    best_ev: Floats  # best EV among eligible actions, before budget
    uplift: Floats  # retention uplift of the chosen action
    cost: Floats
    p_churn: Floats
    customer_value: Floats
    blocked: NDArray[np.int8]  # Block code per [customer, action]
    ev_all: Floats  # EV per [customer, action]
    # What the treatment policy picks (or would pick, for holdout and exploration customers):
    # the counterfactual that per-action readouts and logged propensities need.
    policy_pick: NDArray[np.int64]
    # Actions nobody could get in this batch (their capacity was used up): with them the log
    # says which choices had no chance at all, which off-policy evaluation must respect.
    unavailable: NDArray[np.bool_] | None = None

    def action_name(self, i: int) -> str:
        return self.catalog.names[int(self.action[i])]

    def rows(self, rows: NDArray[np.int64]) -> Decisions:
        """These decisions only (e.g. a part of a base published in one transaction)."""
        per_customer = {
            f.name: getattr(self, f.name)[rows]
            for f in fields(self)
            if isinstance(getattr(self, f.name), np.ndarray) and f.name != "unavailable"
        }
        return replace(self, **per_customer)

    def reasons(self, i: int) -> list[str]:
        """Machine-readable reason codes of decision ``i``."""
        codes = [
            f"segment:{SEGMENTS[self.segment[i]].lower().replace(' ', '_')}",
            f"arm:{Arm(self.arm[i]).label}",
            f"decision:{Outcome(self.outcome[i]).name.lower()}",
        ]
        chosen_ev = self.expected_value[i]
        for a in np.flatnonzero((self.blocked[i] != Block.NONE) & (self.ev_all[i] > chosen_ev)):
            codes.append(f"blocked:{self.catalog.names[a]}:{Block(self.blocked[i, a]).code}")
        if self.arm[i] != Arm.TREATMENT:
            codes.append(f"policy_pick:{self.catalog.names[int(self.policy_pick[i])]}")
        if self.unavailable is not None:
            codes.extend(
                f"{CAPACITY_EXHAUSTED}:{self.catalog.names[a]}"
                for a in np.flatnonzero(self.unavailable)
            )
        return codes

    def all_reasons(self) -> list[list[str]]:
        """``reasons(i)`` of every decision, built column by column: a whole base's in about a
        tenth of the time a loop over ``reasons`` takes."""
        names = self.catalog.names
        segment = [f"segment:{s.lower().replace(' ', '_')}" for s in SEGMENTS]
        arm = {a.value: f"arm:{a.label}" for a in Arm}
        outcome = {o.value: f"decision:{o.name.lower()}" for o in Outcome}
        rows = [
            [segment[s], arm[a], outcome[o]]
            for s, a, o in zip(
                self.segment.tolist(), self.arm.tolist(), self.outcome.tolist(), strict=True
            )
        ]
        beaten = (self.blocked != Block.NONE) & (self.ev_all > self.expected_value[:, None])
        blocked = [[f"blocked:{n}:{b.code}" for b in Block] for n in names]
        for i, a in zip(*np.nonzero(beaten), strict=True):  # row-major: actions in order
            rows[i].append(blocked[a][self.blocked[i, a]])
        for i in np.flatnonzero(self.arm != Arm.TREATMENT).tolist():
            rows[i].append(f"policy_pick:{names[int(self.policy_pick[i])]}")
        if self.unavailable is not None:
            gone = [f"{CAPACITY_EXHAUSTED}:{names[a]}" for a in np.flatnonzero(self.unavailable)]
            for row in rows:
                row.extend(gone)
        return rows

    def explanation(self, i: int) -> str:
        """One line a person can read."""
        head = (
            f"{SEGMENTS[self.segment[i]]}: p_churn {self.p_churn[i]:.2f}, "
            f"{self.value_source} ${self.customer_value[i]:,.0f}"
        )
        outcome = Outcome(self.outcome[i])
        if outcome is Outcome.HOLDOUT:
            return f"{head}, holdout (control group): no action"
        if self.action[i] != DO_NOTHING:
            verb = "explored" if outcome is Outcome.EXPLORE else "chosen"
            return (
                f"{head}, {self.action_name(i)} {verb}: uplift {100 * self.uplift[i]:+.1f} pts, "
                f"EV ${self.expected_value[i]:,.0f} for ${self.cost[i]:,.0f}"
            )
        if outcome is Outcome.NO_POSITIVE_EV:
            return f"{head}, no action: best eligible EV ${self.best_ev[i]:,.0f} <= 0"
        if outcome is Outcome.EXPLORE:
            return f"{head}, no action (exploration drew do_nothing)"
        if self.arm[i] == Arm.EXPLORE:
            return f"{head}, no action: the explored action did not fit the budget or capacity left"
        return (
            f"{head}, no action: best EV ${self.best_ev[i]:,.0f} "
            f"lost to the budget ({outcome.name.lower()})"
        )


@dataclass(frozen=True)
class _Prepared:
    ev: Floats
    cost: Floats
    eligible: NDArray[np.bool_]
    blocked: NDArray[np.int8]
    segment: NDArray[np.int8]
    arm: NDArray[np.int8]


def _prepare(scores: Scores, state: ContactState, config: PolicyConfig) -> _Prepared:
    catalog = config.catalog
    cost = catalog.cost_matrix(scores.customer_value)
    if scores.uplift_retention.shape != cost.shape:
        raise SchemaError(
            f"scores must be [customers, actions] = {cost.shape} for the catalog's actions "
            f"({', '.join(catalog.names)}), got {scores.uplift_retention.shape}"
        )
    validate_scores(
        scores.p_churn,
        scores.uplift_retention,
        scores.uplift_expansion,
        scores.customer_value,
        cost,
    )
    segment = assign_segments(
        scores.p_churn, scores.customer_value, scores.engagement, config.segments
    )
    eligible, blocked = eligibility(catalog, config.contact, state, segment, scores.customer_value)
    ev = expected_value(
        scores.uplift_retention, scores.uplift_expansion, scores.customer_value, cost
    )
    arm = assign_arms(scores.customer_ids, config.arms)
    return _Prepared(ev, cost, eligible, blocked, segment, arm)


def opportunities(
    scores: Scores, state: ContactState, config: PolicyConfig
) -> tuple[Floats, Floats, NDArray[np.bool_]]:
    """(EV, cost, eligible-and-in-treatment) per [customer, action]: what pacing prices.

    Feed it a sample of past traffic to find the initial pacing price (policies.pacing).
    """
    p = _prepare(scores, state, config)
    return p.ev, p.cost, p.eligible & (p.arm == Arm.TREATMENT)[:, None]


def _explore_choices(p: _Prepared, scores: Scores, config: PolicyConfig) -> NDArray[np.int64]:
    picks = explore_pick(scores.decision_keys, p.eligible, config.arms)
    return np.where(p.arm == Arm.EXPLORE, picks, DO_NOTHING)


def _finish(
    p: _Prepared,
    scores: Scores,
    config: PolicyConfig,
    chosen: NDArray[np.int64],
    priced_pick: NDArray[np.int64],
    counterfactual: NDArray[np.int64],
    explored: NDArray[np.int64],
    unavailable: NDArray[np.bool_] | None = None,
) -> Decisions:
    """``counterfactual``: the treatment policy's pick for customers outside the treatment arm;
    ``explored``: exploration's uniform picks, before the budget and capacity limits. An
    explored pick that a limit cut is served as do_nothing and logged as LIMIT_REACHED, not
    EXPLORE: it is not the uniform draw its propensity describes, and a reader of the log
    (feedback.log_training) leaves it out of the randomized rows."""
    idx = np.arange(chosen.size)
    _, best_ev = choose_at_price(p.ev, p.cost, p.eligible, 0.0)
    exploring = p.arm == Arm.EXPLORE
    outcome = np.select(
        [
            p.arm == Arm.HOLDOUT,
            exploring & (chosen == explored),
            exploring,
            best_ev <= 0,
            chosen != DO_NOTHING,
            priced_pick == DO_NOTHING,
        ],
        [
            Outcome.HOLDOUT,
            Outcome.EXPLORE,
            Outcome.LIMIT_REACHED,
            Outcome.NO_POSITIVE_EV,
            Outcome.BEST_EV,
            Outcome.BELOW_PRICE,
        ],
        default=Outcome.LIMIT_REACHED,
    ).astype(np.int8)
    policy_pick = np.where(p.arm == Arm.TREATMENT, chosen, counterfactual)
    return Decisions(
        catalog=config.catalog,
        policy_version=config.version,
        value_source=config.value_source,
        action=chosen,
        arm=p.arm,
        propensity=propensity(chosen, policy_pick, p.eligible, p.arm, config.arms),
        outcome=outcome,
        segment=p.segment,
        expected_value=p.ev[idx, chosen],
        best_ev=best_ev,
        uplift=scores.uplift_retention[idx, chosen] * (chosen != DO_NOTHING),
        cost=p.cost[idx, chosen],
        p_churn=scores.p_churn,
        customer_value=scores.customer_value,
        blocked=p.blocked,
        ev_all=p.ev,
        policy_pick=policy_pick,
        unavailable=unavailable,
    )


def decide_batch(
    scores: Scores,
    state: ContactState,
    config: PolicyConfig,
    budget: float,
    capacity: Capacity = None,
    unavailable: NDArray[np.bool_] | None = None,
) -> Decisions:
    """Decide for a whole base: exploration first (it is small), then the best allocation of the
    rest of the budget and capacity over the treatment arm. Capacity defaults to the catalog's.
    ``unavailable`` [customer, action]: choices that customer cannot have (e.g. when replaying
    a log in which those actions had run out), on top of the contact rules."""
    p = _prepare(scores, state, config)
    if unavailable is not None:
        if unavailable.shape != p.eligible.shape:
            raise SchemaError(f"unavailable must be {p.eligible.shape}, got {unavailable.shape}")
        p = replace(p, eligible=p.eligible & ~unavailable)
    caps = capacity_vector(
        p.ev.shape[1], capacity if capacity is not None else config.catalog.capacities()
    )
    wanted = _explore_choices(p, scores, config)
    idx = np.arange(wanted.size)
    explored = enforce_limits(wanted, p.ev[idx, wanted], p.cost, budget, caps)
    spent = float(p.cost[idx, explored].sum())
    used = np.bincount(explored, minlength=caps.size).astype(float)
    used[DO_NOTHING] = 0.0
    treatable = p.eligible & (p.arm == Arm.TREATMENT)[:, None]
    allocated = allocate_dual(p.ev, p.cost, treatable, budget - spent, np.maximum(caps - used, 0.0))
    chosen = np.where(p.arm == Arm.EXPLORE, explored, allocated)
    # The allocation's price for the rest of the base is not exposed: outside the treatment arm
    # the counterfactual is the best positive-EV action (exact when the budget does not bind).
    best_pick, _ = choose_at_price(p.ev, p.cost, p.eligible, 0.0)
    return _finish(
        p, scores, config, chosen, priced_pick=allocated, counterfactual=best_pick, explored=wanted
    )


def decide_stream(
    scores: Scores,
    state: ContactState,
    config: PolicyConfig,
    pacer: Pacer,
    allowance: float,
    capacity_left: Capacity = None,
) -> Decisions:
    """Decide one micro-batch at the pacer's price, spending at most ``allowance``.

    An action whose ``capacity_left`` is used up is ineligible for everyone, exploration
    included, so the logged propensities describe what could really be chosen."""
    p = _prepare(scores, state, config)
    exhausted = None
    if capacity_left is not None:
        exhausted = capacity_vector(p.ev.shape[1], capacity_left) <= 0
        exhausted[DO_NOTHING] = False
        p = replace(p, eligible=p.eligible & ~exhausted[None, :])
    treatable = p.eligible & (p.arm == Arm.TREATMENT)[:, None]
    priced, priced_score = choose_at_price(p.ev, p.cost, treatable, pacer.price)
    explored = _explore_choices(p, scores, config)
    wanted = np.where(p.arm == Arm.EXPLORE, explored, priced)
    idx = np.arange(wanted.size)
    score = np.where(p.arm == Arm.EXPLORE, p.ev[idx, explored], priced_score)
    chosen = enforce_limits(wanted, score, p.cost, allowance, capacity_left)
    counterfactual, _ = choose_at_price(p.ev, p.cost, p.eligible, pacer.price)
    return _finish(
        p,
        scores,
        config,
        chosen,
        priced_pick=priced,
        counterfactual=counterfactual,
        explored=explored,
        unavailable=exhausted,
    )
