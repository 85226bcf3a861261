"""Streaming pacing on simulated days: how closely spend follows the target curve, hour by hour,
and how much of the hindsight-optimal batch value the paced stream keeps.

For each seed and budget (a share of what the policy would spend with no budget), one day of
arrivals is decided in 5-minute micro-batches by policies.decide_stream under the pacer; the
baseline, in the same run, is decide_batch on the same customers with the same budget, which
sees the whole day at once (hindsight). Run: `.venv/bin/python -m benchmarks.pacing_day`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from benchmarks._common import write_result
from policies.arms import ArmConfig
from policies.decide import PolicyConfig, decide_batch, opportunities
from policies.pacing import PacingConfig, initial_price
from simulator.config import WorldConfig
from simulator.day import OFFICE_HOURS_PROFILE, arrival_times, simulate_paced_day
from simulator.truth import contact_state, noisy_scores, score_policy
from simulator.world import build_world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=60_000)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    policy = PolicyConfig(arms=ArmConfig(holdout_share=0.1, explore_share=0.02))
    unlimited = np.full(len(policy.catalog.names), np.inf)
    rows: list[dict[str, Any]] = []
    for seed in range(1, args.seeds + 1):
        world = build_world(WorldConfig(n_customers=args.customers, seed=seed))
        today = noisy_scores(world, noise=0.5, seed=1, keys="today")
        yesterday = noisy_scores(world, noise=0.5, seed=2, keys="yesterday")
        state = contact_state(world)
        demand = float(decide_batch(today, state, policy, 1e15, unlimited).cost.sum())
        arrivals = arrival_times(world.n, OFFICE_HOURS_PROFILE, 86_400.0, seed + 10)
        for share in (0.1, 0.3, 0.6):
            budget = share * demand
            pacing = PacingConfig(budget=budget, profile=OFFICE_HOURS_PROFILE)
            pacer = initial_price(*opportunities(yesterday, state, policy), budget)
            day = simulate_paced_day(today, state, policy, pacing, pacer, arrivals)
            hindsight = decide_batch(today, state, policy, budget, unlimited).action
            streamed = score_policy(world, day.action).net_value
            rows.append(
                {
                    "seed": seed,
                    "budget_share_of_demand": share,
                    "budget": round(budget),
                    "worst_hourly_error": round(day.worst_hourly_error(), 4),
                    "worst_hour": int(day.hours[np.argmax(np.abs(day.spent / day.target - 1))]),
                    "first_hour_target": round(float(day.target[0])),
                    "end_of_period_error": round(float(day.spent[-1] / budget - 1), 5),
                    "stream_vs_hindsight_batch_value": round(
                        streamed / score_policy(world, hindsight).net_value, 3
                    ),
                }
            )
    summary = {
        "days": len(rows),
        "days_within_10pct_every_hour": sum(r["worst_hourly_error"] <= 0.10 for r in rows),
        "days_ending_within_2pct": sum(abs(r["end_of_period_error"]) <= 0.02 for r in rows),
        "median_stream_vs_hindsight": float(
            np.median([r["stream_vs_hindsight_batch_value"] for r in rows])
        ),
    }
    path = write_result(
        "pacing_day",
        {"customers": args.customers, "seeds": args.seeds, "step_s": 300},
        {"days": rows, "summary": summary},
    )
    for r in rows:
        print(json.dumps(r))
    print(json.dumps(summary, indent=2))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
