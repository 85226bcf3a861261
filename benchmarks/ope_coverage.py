"""Do off-policy intervals cover the truth as often as they claim, on logs made like the stream's?

One world (the closed-loop test's: one plan, action effects x2.5), two bundles trained on its
randomized experiment (``good``; ``flipped`` on inverted outcomes, which serves and logs). Each
repetition is a new experiment (arms and exploration re-drawn): the customers arrive in a random
order and are decided in micro-batches as the worker decides them (decide_stream with the pacing
price moving between batches and the per-action capacity running out during the period), then
IPS / SNIPS / DR estimate the ``good`` bundle's policy, and the simulator's potential outcomes
give its true value on the same customers. Reported: how many intervals cover the truth and the
spread of (estimate - truth) / standard error, which should be about 0 +- 1.

``--ignore-availability`` evaluates the candidate as if every action had stayed available
(the estimator then leans on the reward model wherever the log had no chance of the candidate's
choice): the comparison shows why the log records what ran out.

Run: `.venv/bin/python -m benchmarks.ope_coverage [--repetitions 20] [--customers 16000]`
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks._common import write_result
from benchmarks.ope_power import WORLDS, _register, _truth
from feedback.champion_challenger import evaluate_candidates, off_policy_log
from feedback.readout import join_feedback
from model_export.features import engagement_score, feature_matrix, logins_per_seat, policy_scores
from model_export.manifest import Registry
from model_export.serving import BundleScorer
from policies.arms import Arm, ArmConfig
from policies.catalog import CHANNELS, default_catalog
from policies.decide import PolicyConfig, Scores, decide_stream
from policies.pacing import Pacer, PacingConfig
from policies.rules import ContactState
from policies.segments import SEGMENTS
from simulator.config import validated
from simulator.events import outcome_events
from simulator.world import World, build_world

BATCH = 250
BATCHES_PER_S = 8.0  # 2,000 decisions/s, about the demo's pace


def _stream_log(world: World, scores: Scores, consent: np.ndarray, repetition: int) -> pd.DataFrame:
    """One decision per customer, in a random order and micro-batches, as the worker makes them."""
    catalog = default_catalog()
    n = world.n
    order = np.random.default_rng(repetition).permutation(n)
    arms = ArmConfig(experiment=f"coverage-{repetition}", holdout_share=0.2, explore_share=0.3)
    policy = PolicyConfig(catalog=catalog, arms=arms)
    pacing = PacingConfig(budget=1e9, period_s=3_600.0)
    pacer, spent = Pacer(0.5), 0.0
    used = np.zeros(len(catalog.names))
    rows: list[dict[str, Any]] = []
    for start in range(0, n, BATCH):
        batch = order[start : start + BATCH]
        elapsed = (start / BATCH + 1) / BATCHES_PER_S
        d = decide_stream(
            scores.subset(batch),
            ContactState.fresh(batch.size, consent[batch]),
            policy,
            pacer,
            pacer.allowance(pacing, spent, elapsed),
            np.maximum(catalog.capacities() - used, 0.0),
        )
        spent += float(d.cost.sum())
        np.add.at(used, d.action, 1)
        pacer = pacer.updated(pacing, spent, elapsed, step_s=1.0)
        rows += [
            {
                "row": int(batch[i]),
                "action": catalog.names[int(d.action[i])],
                "cost": float(d.cost[i]),
                "segment": SEGMENTS[d.segment[i]],
                "arm": Arm(d.arm[i]).label,
                "propensity": float(d.propensity[i]),
                "reasons": d.reasons(i),
            }
            for i in range(batch.size)
        ]
    return pd.DataFrame(rows)


def _joined(world: World, log: pd.DataFrame) -> pd.DataFrame:
    names = list(default_catalog().names)
    actions = log.assign(
        action_id=[f"a{r}" for r in log["row"]],
        customer_id=world.customers["customer_id"].astype(str).to_numpy()[log["row"]],
        model_version="flipped",
        decided_at="2026-01-01T00:00:00+00:00",
    ).drop(columns="row")
    chosen = np.asarray(log["action"].map(names.index), dtype=np.int64)
    outcomes = pd.DataFrame(
        outcome_events(world, log["row"].to_numpy(np.int64), chosen, actions["action_id"].tolist())
    )
    joined, _ = join_feedback(actions, outcomes)
    return joined


def run(customers: int, repetitions: int, ignore_availability: bool) -> dict[str, Any]:
    world = build_world(
        validated(n_customers=customers, seed=11, **WORLDS["one plan, effects x2.5"])
    )
    catalog = default_catalog()
    snapshot = world.customers
    ids = snapshot["customer_id"].astype(str).tolist()
    consent = np.column_stack([snapshot[f"consent_{c}"].to_numpy(bool) for c in CHANNELS])
    per_repetition = []
    with tempfile.TemporaryDirectory() as folder:
        registry = Registry(Path(folder) / "registry")
        _register(world, registry, Path(folder))
        served = BundleScorer(registry, catalog, "flipped", threads=0)
        good = BundleScorer(registry, catalog, "good", threads=0)
        p_churn, uplift, expansion = served.predict(feature_matrix(snapshot))
        engagement = engagement_score(snapshot, np.sort(logins_per_seat(snapshot)))
        scores = policy_scores(snapshot, ids, p_churn, uplift, expansion, engagement)
        for repetition in range(repetitions):
            data = off_policy_log(
                _joined(world, _stream_log(world, scores, consent, repetition)),
                snapshot,
                served,
                catalog,
            )
            if ignore_availability:
                data.unavailable[:] = False
            found = evaluate_candidates(data, registry, catalog, {"good": "good"})["good"]
            truth = _truth(world, data, good)
            entry: dict[str, Any] = {
                "truth": truth,
                "decisions_with_an_action_run_out": int(data.unavailable.any(axis=1).sum()),
            }
            for name, estimate in found.items():
                se = (estimate.ci_high - estimate.ci_low) / (2 * 1.959964)
                entry[name] = {
                    "value": estimate.value,
                    "covers": bool(estimate.ci_low <= truth <= estimate.ci_high),
                    "z": (estimate.value - truth) / se,
                }
            per_repetition.append(entry)
            print(json.dumps({"repetition": repetition, **entry}), flush=True)
    summary = {}
    for name in ("ips", "snips", "dr"):
        z = np.array([r[name]["z"] for r in per_repetition])
        summary[name] = {
            "covered": int(sum(r[name]["covers"] for r in per_repetition)),
            "of": repetitions,
            "mean_z": float(z.mean()),
            "sd_z": float(z.std(ddof=1)) if z.size > 1 else float("nan"),
        }
    return {"summary": summary, "repetitions": per_repetition}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=16_000)
    parser.add_argument("--repetitions", type=int, default=20)
    parser.add_argument("--ignore-availability", action="store_true")
    args = parser.parse_args()
    results = run(args.customers, args.repetitions, args.ignore_availability)
    name = "ope_coverage_ignoring_availability" if args.ignore_availability else "ope_coverage"
    path = write_result(name, vars(args), results)
    print(json.dumps(results["summary"], indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
