"""Decisions joined to their outcomes, and the experiment report computed from them.

Input is what the engine's topics carry: ``nba-actions`` (one row per published decision, maybe
more than once after a replay) and ``outcomes`` (renewed / churned / upgraded / complained /
opted_out, joined by ``action_id``). Bad input is counted, never fatal: duplicated decisions,
one action_id published with two contents, outcomes for unknown action_ids, duplicated outcomes,
outcomes dated before their decision, and decisions still waiting for their renewal outcome all
appear in ``JoinQuality`` and are left out of the statistics.

The statistics themselves are statsmodels' (feedback.experiments.readout): this module only
shapes the data, splits it per segment and per action, and checks the guardrails.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import proportions_ztest

from feedback.experiments import readout
from policies.errors import SchemaError

__all__ = [
    "ACTION_COLUMNS",
    "Feedback",
    "Guardrail",
    "JoinQuality",
    "experiment_report",
    "join_feedback",
    "with_features",
]

ACTION_COLUMNS = (
    "action_id",
    "customer_id",
    "action",
    "cost",
    "segment",
    "arm",
    "propensity",
    "reasons",
    "model_version",
    "decided_at",
)
_OUTCOME_COLUMNS = ("customer_id", "outcome_type", "value", "occurred_at", "action_id")
_CONTENT = [c for c in ACTION_COLUMNS if c != "reasons"]


@dataclass(frozen=True)
class JoinQuality:
    """What the join had to leave out, and why (the report prints it)."""

    decisions_received: int = 0
    duplicate_decisions: int = 0
    conflicting_decisions: int = 0
    outcomes_received: int = 0
    outcomes_without_action_id: int = 0
    outcomes_for_unknown_actions: int = 0
    duplicate_outcomes: int = 0
    outcomes_before_decision: int = 0
    contradictory_renewals: int = 0
    decisions_awaiting_outcome: int = 0


@dataclass(frozen=True)
class Guardrail:
    """A harm the treatment must not raise: ``outcome_type``'s rate, treatment minus holdout,
    may exceed the holdout's by at most ``max_increase`` (absolute)."""

    outcome_type: str
    max_increase: float = 0.01


DEFAULT_GUARDRAILS = (Guardrail("complained"), Guardrail("opted_out"))


def _check_columns(frame: pd.DataFrame, wanted: tuple[str, ...], what: str) -> None:
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise SchemaError(f"the {what} need column(s) {missing}")


def _unique_decisions(actions: pd.DataFrame) -> tuple[pd.DataFrame, int, int]:
    """One row per action_id (the first seen); counts exact repeats and conflicting contents."""
    content = actions[_CONTENT].astype(str)
    repeats = int(content.duplicated().sum())
    distinct = content.drop_duplicates()
    conflicts = int(distinct["action_id"].duplicated().sum())
    first = actions.drop_duplicates("action_id", keep="first")
    return first, repeats, conflicts


def _policy_pick(decisions: pd.DataFrame) -> pd.Series:
    """The action the treatment policy chose (treatment) or would have chosen (holdout,
    exploration: the ``policy_pick:`` reason code)."""

    def from_reasons(reasons: Any) -> str | None:
        for code in list(reasons) if reasons is not None else []:
            if str(code).startswith("policy_pick:"):
                return str(code).split(":", 1)[1]
        return None

    logged = decisions["reasons"].map(from_reasons)
    return logged.where(decisions["arm"] != "treatment", decisions["action"])


def join_feedback(
    actions: pd.DataFrame, outcomes: pd.DataFrame
) -> tuple[pd.DataFrame, JoinQuality]:
    """One row per decision with its outcome: ``retained`` (renewed, not churned), ``value``
    (contract value), ``expansion`` revenue, a flag per other outcome type, ``policy_pick``.
    Only decisions whose renewal outcome arrived are returned."""
    _check_columns(actions, ACTION_COLUMNS, "decisions")
    _check_columns(outcomes, _OUTCOME_COLUMNS, "outcomes")
    decisions, repeats, conflicts = _unique_decisions(actions)
    decisions = decisions.assign(
        decided_at=pd.to_datetime(decisions["decided_at"], utc=True),
        policy_pick=_policy_pick(decisions),
    )
    known = outcomes.assign(occurred_at=pd.to_datetime(outcomes["occurred_at"], utc=True))
    no_id = known["action_id"].isna()
    unknown = ~no_id & ~known["action_id"].isin(decisions["action_id"])
    attributed = known[~no_id & ~unknown]
    unique = attributed.drop_duplicates(["action_id", "outcome_type", "occurred_at", "value"])
    timed = unique.merge(decisions[["action_id", "decided_at"]], on="action_id")
    early = timed["occurred_at"] < timed["decided_at"]
    usable = timed[~early]
    joined, contradictory = _per_decision(decisions, usable)
    quality = JoinQuality(
        decisions_received=len(actions),
        duplicate_decisions=repeats,
        conflicting_decisions=conflicts,
        outcomes_received=len(outcomes),
        outcomes_without_action_id=int(no_id.sum()),
        outcomes_for_unknown_actions=int(unknown.sum()),
        duplicate_outcomes=len(attributed) - len(unique),
        outcomes_before_decision=int(early.sum()),
        contradictory_renewals=contradictory,
        decisions_awaiting_outcome=len(decisions) - len(joined),
    )
    return joined, quality


def _per_decision(decisions: pd.DataFrame, outcomes: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Renewal state, value and revenue per decision; a decision with both a renewal and a
    churn keeps the later one (and is counted)."""
    renewals = outcomes[outcomes["outcome_type"].isin(["renewed", "churned"])]
    both = renewals.groupby("action_id")["outcome_type"].nunique()
    latest = renewals.sort_values("occurred_at").drop_duplicates("action_id", keep="last")
    state = latest.set_index("action_id")
    flags = pd.crosstab(outcomes["action_id"], outcomes["outcome_type"]).clip(upper=1)
    expansion = outcomes[outcomes["outcome_type"] == "upgraded"].groupby("action_id")["value"]
    joined = decisions[decisions["action_id"].isin(state.index)].copy()
    ids = joined["action_id"]
    joined["retained"] = (ids.map(state["outcome_type"]) == "renewed").to_numpy()
    joined["value"] = ids.map(state["value"]).astype(float).to_numpy()
    joined["expansion"] = ids.map(expansion.sum()).fillna(0.0).astype(float).to_numpy()
    for outcome_type in ("complained", "opted_out"):
        column = flags[outcome_type] if outcome_type in flags else pd.Series(dtype=float)
        joined[outcome_type] = ids.map(column).fillna(0).astype(bool).to_numpy()
    return joined.reset_index(drop=True), int((both > 1).sum())


def _guardrails(frame: pd.DataFrame, guardrails: tuple[Guardrail, ...]) -> list[dict[str, Any]]:
    treated = frame[frame["arm"] == "treatment"]
    held = frame[frame["arm"] == "holdout"]
    checks: list[dict[str, Any]] = []
    for rail in guardrails:
        if treated.empty or held.empty or rail.outcome_type not in frame:
            checks.append({"outcome_type": rail.outcome_type, "status": "no data"})
            continue
        counts = np.array([treated[rail.outcome_type].sum(), held[rail.outcome_type].sum()])
        sizes = np.array([len(treated), len(held)])
        rates = counts / sizes
        p_value = float(proportions_ztest(counts, sizes)[1]) if counts.sum() > 0 else 1.0
        increase = float(rates[0] - rates[1])
        checks.append(
            {
                "outcome_type": rail.outcome_type,
                "treatment_rate": float(rates[0]),
                "holdout_rate": float(rates[1]),
                "increase": increase,
                "max_increase": rail.max_increase,
                "p_value": p_value,
                "status": "breached" if increase > rail.max_increase else "ok",
            }
        )
    return checks


def _by(frame: pd.DataFrame, column: str, alpha: float) -> dict[str, dict[str, Any]]:
    """The readout within each value of ``column`` (segment, or the policy's pick)."""
    return {
        str(value): readout(group, alpha)
        for value, group in frame.groupby(column, dropna=True)
        if str(value)
    }


def experiment_report(
    joined: pd.DataFrame,
    quality: JoinQuality,
    alpha: float = 0.05,
    guardrails: tuple[Guardrail, ...] = DEFAULT_GUARDRAILS,
) -> dict[str, Any]:
    """Treatment vs holdout overall, per segment and per action (the treatment policy's pick:
    what the treatment arm got vs what the holdout would have got), the exploration arm's
    size, guardrails, and the data-quality counts."""
    ab = joined[joined["arm"].isin(["treatment", "holdout"])]
    return {
        "overall": readout(ab, alpha),
        "by_segment": _by(ab, "segment", alpha),
        "by_action": _by(ab, "policy_pick", alpha),
        "arms": {str(k): int(v) for k, v in joined["arm"].value_counts().items()},
        "model_versions": sorted(joined["model_version"].astype(str).unique().tolist()),
        "guardrails": _guardrails(ab, guardrails),
        "data_quality": asdict(quality),
    }


@dataclass(frozen=True)
class Feedback:
    """The joined log, what the join left out, messages that did not parse, and every
    decision (one row per action_id, with or without an outcome)."""

    joined: pd.DataFrame
    quality: JoinQuality
    unreadable: dict[str, int] = field(default_factory=dict)
    decisions: pd.DataFrame = field(default_factory=pd.DataFrame)

    def report(self, alpha: float = 0.05) -> dict[str, Any]:
        report = experiment_report(self.joined, self.quality, alpha)
        report["data_quality"]["unreadable_messages"] = self.unreadable
        return report


def with_features(
    decisions: pd.DataFrame, snapshot: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The decisions whose customer is in the snapshot, and those customers' snapshot rows,
    aligned row by row."""
    features = snapshot.assign(customer_id=snapshot["customer_id"].astype(str))
    known = features.drop_duplicates("customer_id").set_index("customer_id", drop=False)
    ids = decisions["customer_id"].astype(str)
    rows = decisions[ids.isin(known.index)].reset_index(drop=True)
    frame = known.loc[rows["customer_id"].astype(str).tolist()].reset_index(drop=True)
    return rows, frame
