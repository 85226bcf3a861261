"""The demo's closing table: what the engine did, what it earned against the simulator's truth,
and what the loop read back from its own topics."""

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
from simulator.truth import oracle_policy, score_policy
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
    eligible = np.zeros((world.n, len(world.actions)), dtype=bool)
    eligible[run.decided_rows] = True
    oracle = score_policy(world, oracle_policy(world, run.spent or run.budget, eligible=eligible))
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
        ("true incremental value (oracle, same spend)", f"${oracle.net_value:,.0f}"),
        (
            "engine / oracle",
            f"{engine.net_value / oracle.net_value:.0%}" if oracle.net_value > 0 else "n/a",
        ),
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
        "oracle_net_value": oracle.net_value,
        "latency_p50_ms": p50,
        "latency_p99_ms": p99,
        "consumed": totals["consumed"],
        "invalid": totals["invalid"],
    }
