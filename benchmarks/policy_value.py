"""What each policy truly earns on the simulator, at budgets that can call 1%, 5% and 20% of
the base (budget = share x customers x $200, the price of one account-manager call).

Policies: the oracle (knows every potential outcome), the uplift-EV policy (policies.decide_batch
fed the true expected effects plus model-like noise, and without noise), a risk-sorted policy
(seed 004's V1: call the riskiest accounts, email when calls run out), treat-all (a blanket
retention email, in random order) and random (random eligible action, random order). All share
the same eligibility (consent, segment rules) and call capacity; no holdout or exploration here.
It also measures the batch allocators against the exact MILP optimum on a sample.

Run: `.venv/bin/python -m benchmarks.policy_value [--customers N] [--noise X]`
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks._common import timed, write_result
from policies.allocation import allocate_dual, allocate_greedy, allocate_optimal, enforce_limits
from policies.arms import ArmConfig
from policies.baselines import risk_sorted
from policies.catalog import Catalog
from policies.decide import PolicyConfig, decide_batch, opportunities
from simulator.config import WorldConfig
from simulator.truth import contact_state, noisy_scores, oracle_policy, score_policy
from simulator.world import World, build_world

CALL_PRICE = 200.0
Choice = NDArray[np.int64]


def _calls_capacity(catalog: Catalog, n: int) -> NDArray[np.float64]:
    caps = catalog.capacities().copy()
    caps[catalog.index("account_manager_call")] = round(0.02 * n)  # 2% of the base per period
    return caps


def treat_all(
    world: World,
    eligible: NDArray[np.bool_],
    cost: NDArray[np.float64],
    budget: float,
    catalog: Catalog,
    rng: np.random.Generator,
) -> Choice:
    email = catalog.index("retention_email")
    wanted = np.where(eligible[:, email], email, 0)
    return enforce_limits(wanted, rng.random(world.n), cost, budget)


def random_policy(
    world: World,
    eligible: NDArray[np.bool_],
    cost: NDArray[np.float64],
    budget: float,
    caps: NDArray[np.float64],
    rng: np.random.Generator,
) -> Choice:
    allowed = eligible.copy()
    allowed[:, 0] = False
    weights = rng.random(allowed.shape) * allowed
    wanted = np.where(allowed.any(axis=1), np.argmax(weights, axis=1), 0)
    return enforce_limits(wanted, rng.random(world.n), cost, budget, caps)


def allocator_gap(
    world: World,
    value: NDArray[np.float64],
    cost: NDArray[np.float64],
    eligible: NDArray[np.bool_],
    caps: NDArray[np.float64],
    sample: int,
) -> dict[str, float]:
    rows = np.random.default_rng(5).choice(world.n, size=min(sample, world.n), replace=False)
    v, c, e = value[rows], cost[rows], eligible[rows]
    budget = 0.05 * rows.size * CALL_PRICE
    sample_caps = caps.copy()
    sample_caps[np.isfinite(sample_caps)] = np.round(
        sample_caps[np.isfinite(sample_caps)] * rows.size / world.n
    )
    idx = np.arange(rows.size)
    optimal, optimal_s = timed(lambda: allocate_optimal(v, c, e, budget, sample_caps))
    dual, dual_s = timed(lambda: allocate_dual(v, c, e, budget, sample_caps))
    greedy, greedy_s = timed(lambda: allocate_greedy(v, c, e, budget, sample_caps))
    best = float(v[idx, optimal].sum())
    return {
        "sample_customers": int(rows.size),
        "milp_value": round(best),
        "dual_share_of_milp": round(float(v[idx, dual].sum()) / best, 5),
        "greedy_share_of_milp": round(float(v[idx, greedy].sum()) / best, 5),
        "milp_seconds": round(optimal_s, 3),
        "dual_seconds": round(dual_s, 3),
        "greedy_seconds": round(greedy_s, 3),
    }


def allocation_speed(customers: int) -> dict[str, float]:
    """Seconds to allocate a base of this size (6 actions, capped calls) with each allocator."""
    rng = np.random.default_rng(11)
    value = rng.normal(0.0, 100.0, (customers, 6))
    cost = rng.uniform(5.0, 200.0, (customers, 6))
    value[:, 0] = cost[:, 0] = 0.0
    eligible = rng.random((customers, 6)) < 0.8
    caps = np.array([np.inf, 0.002 * customers, np.inf, np.inf, np.inf, np.inf])
    budget = 0.01 * customers * CALL_PRICE
    _, dual_s = timed(lambda: allocate_dual(value, cost, eligible, budget, caps))
    _, greedy_s = timed(lambda: allocate_greedy(value, cost, eligible, budget, caps))
    return {
        "customers": customers,
        "dual_seconds": round(dual_s, 2),
        "greedy_seconds": round(greedy_s, 2),
        "dual_vs_greedy_time": round(dual_s / greedy_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--gap-sample", type=int, default=5_000)
    parser.add_argument("--speed-customers", type=int, default=1_000_000)
    args = parser.parse_args()

    world = build_world(WorldConfig(n_customers=args.customers, seed=args.seed))
    config = PolicyConfig(arms=ArmConfig(holdout_share=0.0, explore_share=0.0))
    catalog = config.catalog
    state = contact_state(world)
    noisy = noisy_scores(world, noise=args.noise, seed=args.seed)
    perfect = noisy_scores(world, noise=0.0, seed=args.seed)
    value, cost, eligible = opportunities(perfect, state, config)
    caps = _calls_capacity(catalog, world.n)
    rng = np.random.default_rng(args.seed)

    table: list[dict[str, Any]] = []
    for share in (0.01, 0.05, 0.20):
        budget = share * world.n * CALL_PRICE
        oracle = score_policy(world, oracle_policy(world, budget, caps, eligible))
        choices: dict[str, Choice] = {
            f"uplift-EV (noise {args.noise})": decide_batch(
                noisy, state, config, budget, caps
            ).action,
            "uplift-EV (no noise)": decide_batch(perfect, state, config, budget, caps).action,
            "risk-sorted (V1)": risk_sorted(noisy.p_churn, eligible, cost, budget, caps, catalog),
            "treat-all (email)": treat_all(world, eligible, cost, budget, catalog, rng),
            "random": random_policy(world, eligible, cost, budget, caps, rng),
        }
        rows = {"oracle": oracle} | {name: score_policy(world, c) for name, c in choices.items()}
        for name, score in rows.items():
            table.append(
                {
                    "budget_share": share,
                    "budget": round(budget),
                    "policy": name,
                    "net_value": round(score.net_value),
                    "share_of_oracle": round(score.net_value / oracle.net_value, 3),
                    "incremental_retained_value": round(score.incremental_retained_value),
                    "incremental_revenue": round(score.incremental_revenue),
                    "spend": round(score.spend),
                    "treated": score.n_treated,
                    "wasted_spend_share": round(score.wasted_spend_share, 3),
                }
            )
    gap = allocator_gap(world, value, cost, eligible, caps, args.gap_sample)
    by = {(r["budget_share"], r["policy"]): r["net_value"] for r in table}
    ratios = {
        f"uplift_ev_vs_risk_sorted_at_{int(s * 100)}pct": round(
            float(by[(s, f"uplift-EV (noise {args.noise})")]) / float(by[(s, "risk-sorted (V1)")]),
            2,
        )
        for s in (0.01, 0.05, 0.20)
    }
    speed = allocation_speed(args.speed_customers)
    results = {"table": table, "allocator_gap": gap, "ratios": ratios, "allocation_speed": speed}
    parameters = {
        "customers": world.n,
        "seed": args.seed,
        "noise": args.noise,
        "call_capacity": int(caps[1]),
        "call_price": CALL_PRICE,
    }
    path = write_result("policy_value", parameters, results)
    print(markdown(table))
    print(json.dumps({"allocator_gap": gap, "ratios": ratios, "allocation_speed": speed}, indent=2))
    print(f"written: {path}")


def markdown(table: list[dict[str, Any]]) -> str:
    lines = [
        "| budget | policy | net value | share of oracle | spend | treated | wasted spend |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in table:
        budget = f"{int(r['budget_share'] * 100)}% (${r['budget']:,})"
        lines.append(
            f"| {budget} | {r['policy']} | ${r['net_value']:,} | {r['share_of_oracle']} | "
            f"${r['spend']:,} | {r['treated']:,} | {r['wasted_spend_share']:.0%} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
