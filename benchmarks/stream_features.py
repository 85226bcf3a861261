"""The stream's event features: what they are worth to the policy, that the worker computes what
the batch job computes, and what they cost per micro-batch.

On the ticket-saves project (simulator/ticket_campaign.py), whose true effects are known:

1. **Value.** The same campaign learned twice, with and without the event feature (support
   tickets in the 7 days before the decision), each policy run on the 30% of customers neither
   model saw at 1/5/20% budgets (of treating everyone by call), valued by the true effects, as a
   share of the oracle that knows those effects under the same rules (consent, do-not-disturb,
   the same allocation, no holdout or exploration for either).
2. **Parity, through Kafka, the worker's engine, Redis and Feast.** A week of live events for
   ``--customers`` customers (tickets, logins as triggers, in time order) replayed through the
   engine serving the project; then every customer's `tickets_7d` in the Feast online store
   (written by the worker at its last trigger) against the batch job's value at that trigger's
   time, from the same events. Goal: 0 mismatches.
3. **Cost.** Per micro-batch, the time in the live windows (adding the batch's events, reading
   the stored events back and computing the triggers' features, writing them to Feast) against
   the whole batch's processing time. The stored events are read in the scorer's one read
   pipeline with the customers' features and opt-outs; that shared round trip is not counted.

Starts its own Kafka broker and Redis.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import pandas as pd
from confluent_kafka import Producer

from benchmarks._common import write_result
from benchmarks.end_to_end import _settings
from features.event_features import mismatches
from features.project_repo import build_project_sources, materialize_window
from ingest.importer import import_project, imported_table
from ingest.project import Project, load_project
from model_export.experiment import Campaign, load_campaign
from model_export.manifest import Registry
from model_export.project_models import ProjectTrained, train_project
from model_export.project_serving import contact_state, project_scores
from model_export.runs import export_run, save_project_run
from nba.demo import _create_topics
from nba.local_servers import stack
from nba.replay import send_events
from policies.arms import ArmConfig
from policies.decide import Scores, decide_batch
from simulator.ticket_campaign import ACTIONS, live_week, write_ticket_campaign
from stream_app import kafka_clients
from stream_app.decision_loop import DecisionLoop, RenewableProducer
from stream_app.messages import events_from_frame
from stream_app.project_source import ProjectScoreSource
from stream_app.settings import Settings
from stream_app.worker import build_engine, project_feature_store

F = TypeVar("F", bound=Callable[..., Any])
BUDGETS = (0.01, 0.05, 0.20)
NO_ARMS = ArmConfig(holdout_share=0.0, explore_share=0.0)


def _learned(
    root: Path, n: int, seed: int, with_events: bool
) -> tuple[Project, Campaign, ProjectTrained]:
    folder = root / ("with" if with_events else "without")
    folder.mkdir(parents=True)
    project = load_project(write_ticket_campaign(folder, n, seed, with_events))
    _, imported = import_project(project, folder / "imported")
    campaign = load_campaign(imported, project)
    return project, campaign, train_project(campaign, "t", seed=seed)


def _true_value(
    chosen: np.ndarray, truth: np.ndarray, value: np.ndarray, cost: np.ndarray
) -> float:
    rows = np.arange(chosen.size)
    gain = (truth[rows, chosen] - truth[:, 0]) * value
    return float((gain - cost[rows, chosen]).sum())


def value_with_and_without(root: Path, n: int, seed: int) -> dict[str, Any]:
    runs = {name: _learned(root, n, seed, name == "with") for name in ("with", "without")}
    project, campaign, trained = runs["with"]
    rows = trained.test_rows  # the same split for both: same rows, seed and arms
    customers = campaign.frame.iloc[rows]
    truth_file = pd.read_csv(root / "with" / "truth.csv").set_index("customer_id")
    truth = truth_file.loc[customers["customer_id"], [f"p_retain__{a}" for a in ACTIONS]]
    p = truth.to_numpy(np.float64)
    policy = project.policy_config(NO_ARMS)
    value = customers["contract_value"].to_numpy(np.float64)
    cost = policy.catalog.cost_matrix(value)
    oracle_scores = Scores(
        customer_ids=customers["customer_id"].tolist(),
        decision_keys=customers["customer_id"].tolist(),
        p_churn=1 - p[:, 0],
        uplift_retention=p - p[:, :1],
        uplift_expansion=np.zeros_like(p),
        customer_value=value,
        engagement=np.ones(rows.size),
    )
    result: dict[str, Any] = {"held_out_customers": int(rows.size)}
    for share in BUDGETS:
        budget = share * rows.size * 50.0
        state = contact_state(project, customers)
        oracle = decide_batch(oracle_scores, state, policy, budget).action
        best = _true_value(oracle, p, value, cost)
        row: dict[str, Any] = {"budget": budget, "oracle_true_value": round(best, 2)}
        for name, (proj, camp, model) in runs.items():
            scores = project_scores(customers, proj, model.predict(camp.x[rows]))
            chosen = decide_batch(scores, state, policy, budget).action
            achieved = _true_value(chosen, p, value, cost)
            row[f"{name}_event_features"] = {
                "true_value": round(achieved, 2),
                "share_of_oracle": round(achieved / best, 4) if best > 0 else None,
            }
        result[f"budget_{int(share * 100)}pct"] = row
    return result


def _timed_into(spent: list[float], fn: F) -> F:
    @wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - started)

    return cast(F, run)


def parity_and_cost(
    root: Path, settings: Settings, trained: ProjectTrained, n: int, seed: int
) -> dict[str, Any]:
    project_file = root / "with" / "nba.yaml"
    project = load_project(project_file)
    imported = root / "with" / "imported"
    registry = Registry(root / "registry")
    export_run(save_project_run(trained, root / "run", ""), registry, "tickets")
    registry.promote("tickets")
    settings = settings.model_copy(
        update={
            "project": project_file,
            "imported_data": imported,
            "model_registry": registry.root,
            "trigger_min_interval_s": 0.0,
            "holdout_share": 0.0,
            "explore_share": 0.0,
            "pacing_start": datetime.now(UTC) - timedelta(days=1),
        }
    )
    build_project_sources(project, imported, settings.feature_data)
    store = project_feature_store(settings, project)
    store.apply()
    store.materialize(*materialize_window(imported))
    _create_topics(settings, [settings.topic_events, settings.topic_actions, settings.topic_dlq])
    customers = imported_table(imported, "customers")["customer_id"].astype(str).head(n).tolist()
    week = live_week(customers, datetime.now(UTC) - timedelta(minutes=5), seed)
    events = send_events(
        kafka_clients.producer(settings),
        settings.topic_events,
        events_from_frame(week, ["severity"]),
    )
    transactional = RenewableProducer(
        lambda: kafka_clients.transactional_producer(settings, f"bench-{uuid.uuid4().hex}")
    )
    engine = build_engine(settings, cast(Producer, transactional))
    source = engine._decider._scores.__self__  # type: ignore[attr-defined]
    assert isinstance(source, ProjectScoreSource)
    windows_s: list[float] = []
    windows = source._windows
    assert windows is not None
    windows.add = _timed_into(windows_s, windows.add)  # type: ignore[method-assign]
    windows.stored_of = _timed_into(windows_s, windows.stored_of)  # type: ignore[method-assign]
    windows.computed = _timed_into(windows_s, windows.computed)  # type: ignore[method-assign]
    source._write_live = _timed_into(windows_s, source._write_live)  # type: ignore[method-assign]
    consumer = kafka_clients.consumer(settings, settings.consumer_group)
    consumer.subscribe([settings.topic_events])
    loop = DecisionLoop(consumer=consumer, producer=transactional, engine=engine)
    batch_s: list[float] = []
    consumed, decided = 0, 0
    while consumed < events:
        started = time.perf_counter()
        stats = loop.run_once()
        if stats.consumed:
            batch_s.append(time.perf_counter() - started)
        consumed += stats.consumed
        decided += stats.decided
    loop.close()
    return {
        "customers": len(customers),
        "events_replayed": events,
        "decisions": decided,
        **_compare(store, week, project, _decided_triggers(settings, decided)),
        "batches": len(batch_s),
        "mean_batch_ms": round(1_000 * float(np.mean(batch_s)), 2),
        "mean_windows_ms_per_batch": round(1_000 * sum(windows_s) / max(len(batch_s), 1), 2),
        "windows_share_of_batch_time": round(sum(windows_s) / sum(batch_s), 4),
    }


def _decided_triggers(settings: Settings, expected: int) -> set[str]:
    """The trigger event ids of the decisions on the actions topic (read_committed)."""
    reader = kafka_clients.consumer(
        settings, f"parity-{uuid.uuid4().hex[:6]}", **{"isolation.level": "read_committed"}
    )
    reader.subscribe([settings.topic_actions])
    found: set[str] = set()
    deadline = time.monotonic() + 120
    while len(found) < expected and time.monotonic() < deadline:
        for message in reader.consume(500, 0.5):
            if message.error() is None:
                found.add(json.loads(message.value() or b"{}")["trigger"]["event_id"])
    reader.close()
    return found


def _compare(
    store: Any, week: pd.DataFrame, project: Project, triggers: set[str]
) -> dict[str, Any]:
    """Each decided customer's online value against the batch job at its last decided trigger
    (the value the worker wrote then: one trigger per customer and batch is decided)."""
    decided = week[week["event_id"].isin(triggers)]
    last = decided.groupby("customer_id")["occurred_at"].max().reset_index(name="at")
    online = store.read_batch(last["customer_id"].tolist())
    return {
        "customers_compared": int(len(last)),
        "features_compared": int(len(last) * len(project.event_features)),
        "mismatches": mismatches(online, week, last, project.event_features),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaign", type=int, default=20_000, help="customers in the campaign")
    parser.add_argument("--customers", type=int, default=10_000, help="customers streamed")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="nba-stream-features-"))
    results: dict[str, Any] = {"value": value_with_and_without(root, args.campaign, args.seed)}
    print(json.dumps(results["value"], indent=2))
    run = uuid.uuid4().hex[:6]
    settings = _settings(root, run)
    stack.up(settings, ["kafka", "redis"])
    try:
        _, _, trained = _learned(root / "served", args.campaign, args.seed, True)
        results["parity_and_cost"] = parity_and_cost(
            root / "served", settings, trained, args.customers, args.seed
        )
    finally:
        stack.down(settings, ["kafka", "redis"])
    path = write_result("stream_features", vars(args), results)
    print(json.dumps(results["parity_and_cost"], indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
