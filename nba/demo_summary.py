"""The demo's closing table: what the engine did, what it earned against the simulator's truth,
and what the loop read back from its own topics.

What it earned is measured on the customers the engine decided for in its treatment arm (the
holdout and exploration arms are left out of both sides), against three yardsticks under the same
rules (the same customers, the consent and eligibility rules, the catalog's capacity and the
engine's own spend): the true-effect oracle (the allocator fed every customer's true expected
effects: the headline), the realized-outcome oracle (it knows every outcome: a ceiling no policy
reaches) and risk-sorted (V1, on the served model's churn scores). The models were trained on
another simulated world, so these customers are ones they never saw.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from feedback.readout import Feedback
from nba.replay import ReplayStats
from policies.allocation import allocate_dual
from policies.arms import ArmConfig
from policies.baselines import risk_sorted
from policies.decide import PolicyConfig, opportunities
from simulator.truth import contact_state, noisy_scores, oracle_policy, score_policy
from simulator.world import World
from stream_app.engine import latency_percentiles

__all__ = ["DemoRun", "summarize"]


@dataclass(frozen=True)
class DemoRun:
    world: World
    actions: list[dict[str, Any]]  # as the CRM read them, one per action_id
    choice: np.ndarray  # action index per customer of the world (0: not decided / nothing)
    decided_rows: np.ndarray
    spent: float
    budget: float
    totals: Counter[str]  # consumed, invalid
    latencies: list[float]
    replay: ReplayStats | None
    feedback: Feedback
    report_path: Path
    registry: Path
    p_churn: np.ndarray  # the served model's churn score per customer of the world


def yardsticks(
    world: World, actions: list[dict[str, Any]], p_churn: np.ndarray
) -> dict[str, float]:
    """The engine's treatment-arm decisions against the three yardsticks (see the module's doc),
    and the share of its treated customers given an action with a negative true effect."""
    config = PolicyConfig(arms=ArmConfig(holdout_share=0.0, explore_share=0.0))
    _, cost, allowed = opportunities(noisy_scores(world, noise=0.0), contact_state(world), config)
    index = {c: i for i, c in enumerate(world.customers["customer_id"].astype(str))}
    names = list(world.actions)
    treatment = [a for a in actions if a["arm"] == "treatment"]
    rows = np.array([index[str(a["customer_id"])] for a in treatment], dtype=np.int64)
    choice = np.zeros(world.n, dtype=np.int64)
    choice[rows] = [names.index(a["action"]) for a in treatment]
    eligible = np.zeros_like(allowed)
    eligible[rows] = allowed[rows]
    eligible[:, 0] = True
    idx = np.arange(world.n)
    spend = float(cost[idx, choice].sum())
    caps = config.catalog.capacities()
    gain = world.true_uplift()

    def true_value(chosen: np.ndarray) -> float:
        return float((gain[idx, chosen] - cost[idx, chosen]).sum())

    def ratio(top: float, bottom: float) -> float:
        return top / bottom if bottom > 0 else float("nan")

    true_oracle = allocate_dual(gain - cost, cost, eligible, spend, caps)
    realized_oracle = oracle_policy(world, spend, caps, eligible)
    risk = risk_sorted(p_churn, eligible, cost, spend, caps, config.catalog)
    treated = choice != 0
    return {
        "vs_true_effect_oracle": ratio(true_value(choice), true_value(true_oracle)),
        "vs_realized_outcome_oracle": ratio(
            score_policy(world, choice).net_value, score_policy(world, realized_oracle).net_value
        ),
        "vs_risk_sorted": ratio(true_value(choice), true_value(risk)),
        "harmful_share_of_treated": float(
            (treated & (gain[idx, choice] < 0)).sum() / max(int(treated.sum()), 1)
        ),
    }


def _readout_line(feedback: Feedback) -> str:
    overall = feedback.report()["overall"]
    if overall.get("status") == "no data":
        return "no data yet"
    low, high = overall["lift_abs_ci"]
    label = " (underpowered)" if overall["status"] == "underpowered" else ""
    return f"{100 * overall['lift_abs']:+.2f} pts [{100 * low:+.2f}, {100 * high:+.2f}]{label}"


def _true_lift(world: World, feedback: Feedback) -> float:
    """Retention under the served actions minus under do_nothing, for the treatment arm."""
    treated = feedback.joined[feedback.joined["arm"] == "treatment"]
    index = {c: i for i, c in enumerate(world.customers["customer_id"].astype(str))}
    rows = treated["customer_id"].astype(str).map(index).to_numpy(np.int64)
    names = list(world.actions)
    chosen = treated["action"].map(names.index).to_numpy(np.int64)
    if rows.size == 0:
        return 0.0
    return float((world.retained[rows, chosen].astype(float) - world.retained[rows, 0]).mean())


def summarize(console: Console, run: DemoRun) -> dict[str, object]:
    """Print the demo's table; return its key figures."""
    world, actions, totals, replay = run.world, run.actions, run.totals, run.replay
    engine = score_policy(world, run.choice)
    measured = yardsticks(world, actions, run.p_churn)
    p50, p99 = latency_percentiles(run.latencies)
    by_action = Counter(str(a["action"]) for a in actions)
    by_segment = Counter(str(a["segment"]) for a in actions)
    by_arm = Counter(str(a["arm"]) for a in actions)
    table = Table(title="nba demo: what happened")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        (
            "events sent / processed",
            f"{replay.sent if replay else 0:,} / {totals['consumed']:,} "
            f"({(replay.rate if replay else 0):,.0f}/s sent)",
        ),
        ("invalid events (to DLQ)", f"{totals['invalid']:,}"),
        ("decisions published (distinct action_ids)", f"{len(actions):,}"),
        ("decisions by action", ", ".join(f"{k} {v:,}" for k, v in by_action.most_common())),
        ("decisions by segment", ", ".join(f"{k} {v:,}" for k, v in by_segment.most_common())),
        ("arms", ", ".join(f"{k} {v:,}" for k, v in by_arm.most_common())),
        ("spend vs budget", f"${run.spent:,.0f} of ${run.budget:,.0f}"),
        ("latency event->action p50 / p99", f"{p50:,.0f} ms / {p99:,.0f} ms"),
        (
            "true incremental value (engine)",
            f"${engine.net_value:,.0f} (saves {engine.saves:,}, "
            f"sleeping dogs woken {engine.sleeping_dogs_woken:,})",
        ),
        (
            "treatment arm vs true-effect oracle (same customers, rules, spend)",
            f"{measured['vs_true_effect_oracle']:.0%}",
        ),
        (
            "... vs realized-outcome oracle (a ceiling)",
            f"{measured['vs_realized_outcome_oracle']:.0%}",
        ),
        ("... vs risk-sorted (V1)", f"{measured['vs_risk_sorted']:.2f}x"),
        ("treated given a truly harmful action", f"{measured['harmful_share_of_treated']:.0%}"),
        ("A/B readout from the topics (treatment vs holdout)", _readout_line(run.feedback)),
        (
            "true retention lift of the served policy",
            f"{100 * _true_lift(world, run.feedback):+.2f} pts",
        ),
        ("decision report", str(run.report_path)),
        ("models (`nba models list --demo`)", str(run.registry)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    return {
        "decisions": len(actions),
        "spent": run.spent,
        "engine_net_value": engine.net_value,
        **measured,
        "latency_p50_ms": p50,
        "latency_p99_ms": p99,
        "consumed": totals["consumed"],
        "invalid": totals["invalid"],
    }
