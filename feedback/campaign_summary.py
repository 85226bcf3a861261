"""What the campaign page (stream_app.api) and the decision report say, in a marketing lead's
words: spend against the budget by action, channel and segment; the A/B lift as a sentence
with its interval (or how many more customers it needs); the Qini curve of the served scores
on the randomized comparison; and the budget curve of the current model on the current base.

Pure functions of frames: the numbers come from `feedback.experiments` (statsmodels) and
`model_export.evaluation` (scikit-uplift); this module only arranges and words them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from feedback.experiments import sample_size_per_arm
from model_export.evaluation import qini_points

__all__ = [
    "BudgetCurve",
    "label",
    "lift_in_words",
    "money",
    "qini_summary",
    "spend_summary",
    "talking_points",
]

# The smallest lift worth finding when the observed one is too small to plan with: 2 points.
PLANNING_LIFT = 0.02


def label(name: str) -> str:
    """``retention_email`` -> ``Retention email``."""
    text = str(name).replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def money(amount: float) -> str:
    """``$12,345`` (cents only under $100)."""
    sign = "-" if amount < 0 else ""
    value = abs(float(amount))
    return f"{sign}${value:,.2f}" if value < 100 else f"{sign}${value:,.0f}"


def _by(actions: pd.DataFrame, column: str) -> list[dict[str, Any]]:
    grouped = actions.groupby(column, dropna=False).agg(
        decisions=("action_id", "size"), spend=("cost", "sum")
    )
    return [
        {"name": label(str(name)), "decisions": int(row.decisions), "spend": float(row.spend)}
        for name, row in grouped.sort_values("spend", ascending=False).iterrows()
    ]


def spend_summary(actions: pd.DataFrame, budget: float) -> dict[str, Any]:
    """Decisions and committed spend by action, channel and segment, against the budget (one
    row per action_id; ``actions`` as `nba-actions` carries them)."""
    if actions.empty:
        return {"decisions": 0, "spend": 0.0, "budget": budget, "by_action": [], "by_channel": []}
    unique = actions.drop_duplicates("action_id")
    segments = pd.crosstab(unique["segment"], unique["action"])
    return {
        "decisions": len(unique),
        "spend": float(unique["cost"].sum()),
        "budget": float(budget),
        "periods": sorted(unique["budget_period"].astype(str).unique().tolist()),
        "model_versions": sorted(unique["model_version"].astype(str).unique().tolist()),
        "first_decision": str(unique["decided_at"].min()),
        "last_decision": str(unique["decided_at"].max()),
        "by_action": _by(unique, "action"),
        "by_channel": _by(unique[unique["channel"] != "none"], "channel"),
        "by_segment": [
            {
                "segment": label(str(segment)),
                "counts": {label(str(a)): int(n) for a, n in row.items() if n > 0},
                "decisions": int(row.sum()),
            }
            for segment, row in segments.iterrows()
        ],
        "arms": {str(k): int(v) for k, v in unique["arm"].value_counts().items()},
    }


def _more_needed(overall: dict[str, Any]) -> int:
    """More customers per arm for the observed lift (or PLANNING_LIFT if smaller) at 80% power."""
    base = float(overall["retention"]["holdout"]["rate"])
    effect = max(abs(float(overall["lift_abs"])), PLANNING_LIFT)
    effect = effect if base + effect < 1 else -effect
    if not 0 < base < 1:
        return 0
    needed = sample_size_per_arm(base, effect)
    have = min(overall["customers"]["treatment"], overall["customers"]["holdout"])
    return max(needed - int(have), 0)


def lift_in_words(overall: dict[str, Any]) -> dict[str, Any]:
    """The A/B readout (``feedback.experiments.readout``) as a headline and a sentence."""
    if overall.get("status") == "no data":
        return {
            "status": "no data",
            "headline": "No outcomes yet",
            "detail": "The comparison needs outcomes of customers in both the treated group and "
            "the holdout (customers deliberately left untreated).",
        }
    treated = overall["retention"]["treatment"]["rate"]
    holdout = overall["retention"]["holdout"]["rate"]
    low, high = (100 * v for v in overall["lift_abs_ci"])
    sizes = overall["customers"]
    measured = (
        f"Treated customers stayed {100 * treated:.1f}% of the time, the holdout "
        f"{100 * holdout:.1f}%: {100 * overall['lift_abs']:+.1f} points (95% interval "
        f"{low:+.1f} to {high:+.1f}), from {sizes['treatment']:,} treated and "
        f"{sizes['holdout']:,} holdout customers."
    )
    if overall["status"] == "underpowered":
        more = _more_needed(overall)
        return {
            "status": "underpowered",
            "headline": f"Not enough data yet: about {more:,} more customers per group needed",
            "detail": measured + " The interval still includes no effect at all.",
            "more_per_arm": more,
        }
    verdict = "The campaign works" if low > 0 else "No measurable lift"
    return {"status": "ok", "headline": verdict, "detail": measured}


def qini_summary(joined: pd.DataFrame, points: int = 40) -> dict[str, Any] | None:
    """The Qini curve of the logged uplift scores on the randomized treatment-vs-holdout
    decisions whose renewal is known, thinned to ``points``; None without both arms."""
    ab = joined[joined["arm"].isin(["treatment", "holdout"])]
    if ab.empty or ab["arm"].nunique() < 2:
        return None
    treated = np.asarray(ab["arm"] == "treatment", dtype=np.int64)
    x, q = qini_points(ab["retained"].to_numpy(float), ab["uplift"].to_numpy(float), treated)
    keep = np.unique(np.linspace(0, len(x) - 1, min(points, len(x))).round().astype(int))
    return {
        "customers": [int(v) for v in x[keep]],
        "incremental": [float(v) for v in q[keep]],
        "random": [float(q[-1] * v / x[-1]) if x[-1] else 0.0 for v in x[keep]],
        "n": len(ab),
    }


@dataclass(frozen=True)
class BudgetCurve:
    """Expected incremental value against spend when the budget goes to the best expected
    value per dollar first: ``spend[k]`` and ``value[k]`` after the first ``k`` customers."""

    spend: NDArray[np.float64]
    value: NDArray[np.float64]
    base: int

    @classmethod
    def of(cls, decisions: pd.DataFrame) -> BudgetCurve:
        """``decisions``: one row per customer with the action the policy picks without a
        budget limit (``cost``, ``expected_value`` net of cost)."""
        paid = decisions[(decisions["cost"] > 0) & (decisions["expected_value"] > 0)]
        order = (paid["expected_value"] / paid["cost"]).to_numpy().argsort(kind="stable")[::-1]
        cost = paid["cost"].to_numpy(float)[order]
        gross = paid["expected_value"].to_numpy(float)[order] + cost
        spend = np.concatenate([[0.0], np.cumsum(cost)])
        return cls(spend, np.concatenate([[0.0], np.cumsum(gross)]), len(decisions))

    @property
    def max_useful_budget(self) -> float:
        """Past it, no customer is left whose expected value beats the cost."""
        return float(self.spend[-1])

    def at(self, budget: float) -> dict[str, Any]:
        """What ``budget`` buys: the customers treated, the spend, the expected incremental
        value and that value net of the spend."""
        treated = int(np.searchsorted(self.spend, budget, side="right")) - 1
        spend, value = float(self.spend[treated]), float(self.value[treated])
        return {
            "budget": float(budget),
            "customers": treated,
            "spend": spend,
            "incremental_value": value,
            "net_value": value - spend,
        }

    def points(self, count: int = 60) -> dict[str, Any]:
        last = len(self.spend) - 1
        keep = np.unique(np.linspace(0, last, min(count, last + 1)).round().astype(int))
        return {
            "spend": [float(v) for v in self.spend[keep]],
            "incremental_value": [float(v) for v in self.value[keep]],
            "customers": [int(v) for v in keep],
            "max_useful_budget": self.max_useful_budget,
            "base": self.base,
        }


def talking_points(decision: dict[str, Any]) -> list[str]:
    """What an account manager on a call can say or keep in mind, from one decision."""
    action = str(decision["action"])
    points = [
        f"Risk of leaving: {100 * float(decision['p_churn']):.0f}% "
        f"({label(str(decision['segment'])).lower()} segment); "
        f"customer value {money(float(decision['customer_value']))}.",
    ]
    if decision["arm"] == "holdout":
        points.append(
            "This customer is in the holdout: no action on purpose, so that the campaign's lift "
            "can be measured. Please do not offer anything extra."
        )
    elif action == "do_nothing":
        points.append("No action is worth its cost for this customer now.")
    else:
        points.append(
            f"Suggested: {label(action).lower()} by {decision['channel']}, cost "
            f"{money(float(decision['cost']))}; expected net value "
            f"{money(float(decision['expected_value']))}."
        )
        if float(decision["uplift"]) > 0:
            points.append(
                f"The model expects it to raise the chance they stay by "
                f"{100 * float(decision['uplift']):.1f} points."
            )
    drivers = [r.split(":") for r in decision["reasons"] if str(r).startswith("driver:")]
    named = [
        f"{label(name).lower()} ({'raises' if float(weight) > 0 else 'lowers'} it)"
        for _, name, weight, *_ in drivers[:3]
    ]
    if named:
        points.append(f"What weighs most on the risk: {', '.join(named)}.")
    return points
