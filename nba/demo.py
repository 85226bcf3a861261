"""`nba demo`: the whole loop on the local stack, end to end, in a couple of minutes.

Bring up the project's own Kafka broker and Redis, simulate a customer world, train the churn
and uplift models on a randomized experiment of that world and serve them as an ONNX bundle,
start `nba worker` (the Faust app, as its own process), replay the world's engagement events
into Kafka at a set rate while it decides in micro-batches (validation, streaming aggregates
into the Feast online store, triggers, one bundle call, policy, pacing, Redis budget ledger),
read `nba-actions` back as a CRM would, emit the outcomes the simulator knows, and print what
happened, including the true incremental value against the oracle and the A/B readout from the
topics. Tears down what it started. Features are read from the Feast online store (Redis),
loaded from the feature jobs' parquet sources by `materialize`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from confluent_kafka.cimpl import NewTopic
from rich.console import Console
from rich.progress import Progress

from feedback.readout import Feedback
from model_export.features import feature_matrix
from model_export.manifest import Registry
from model_export.report import render_report
from model_export.runs import export_run, save_run
from model_export.serving import BundleScorer
from model_export.training import train_models
from nba.commands.features import build_sources
from nba.commands.feedback import decision_report, load_feedback
from nba.commands.simulate import truth_frame
from nba.demo_summary import DemoRun, summarize
from nba.local_servers import stack
from nba.observe import action_latencies, events_processed_or_none, wait_for_events
from nba.replay import ReplayStats, replay_events
from nba.topic_reader import read_topic
from policies.catalog import default_catalog
from policies.decide import opportunities
from policies.pacing import Pacer, initial_price
from simulator.config import validated
from simulator.datasets import randomized_experiment
from simulator.events import days_holding, generate_events, outcome_events
from simulator.world import AS_OF, World, build_world
from stream_app import kafka_clients
from stream_app.feature_store import FeatureStoreAdapter
from stream_app.ledger import BudgetLedger
from stream_app.redis_clients import redis_client
from stream_app.scorer import FeatureScoreSource
from stream_app.settings import Settings
from stream_app.worker import policy_config

__all__ = ["DemoOptions", "run_demo"]


@dataclass(frozen=True)
class DemoOptions:
    customers: int = 20_000
    rate: float = 2_000.0
    seconds: float = 30.0
    budget: float = 100_000.0
    seed: int = 7


def _demo_settings(
    settings: Settings, options: DemoOptions, run: str, topics: dict[str, str]
) -> Settings:
    """The worker's settings for this run: own topics, group, ledger period, models, features."""
    root = settings.state_dir / "demo" / run
    return settings.model_copy(
        update={
            "topic_events": topics["events"],
            "topic_actions": topics["actions"],
            "topic_dlq": topics["dlq"],
            "topic_outcomes": topics["outcomes"],
            "consumer_group": f"nba-demo-{run}",
            "budget": options.budget,
            "budget_period": f"demo-{run}",
            "pacing_period_s": options.seconds,
            "experiment": f"demo-{options.seed}",
            "model_registry": root / "models",
            "feature_repo": root / "feature_repo",
            "feature_data": root / "features",
            "feature_project": f"demo{run}",
        }
    )


def _initial_pacer(
    settings: Settings, world: World, features: FeatureStoreAdapter, scorer: BundleScorer
) -> Pacer:
    """A price that would spend the budget on yesterday's opportunities (the whole base scored
    once), scaled by the share of the base that triggers a decision during a demo."""
    source = FeatureScoreSource(features.read_batch, scorer, world.customers)
    everyone = world.customers["customer_id"].astype(str).tolist()
    yesterday = source.scores(everyone, [f"yesterday:{c}" for c in everyone])
    policy = policy_config(settings)
    triggered_share = 0.6  # about this share of the base triggers a decision during a demo
    return initial_price(
        *opportunities(yesterday, source.contacts(everyone), policy),
        settings.budget / triggered_share,
    )


def _train_and_serve(settings: Settings, world: World, run: str, seed: int) -> BundleScorer:
    """Train on a randomized experiment of ``world`` (another world than the stream's, so the
    stream's customers are ones the models never saw), export and promote the bundle."""
    actions = default_catalog().names
    truth = truth_frame(world)
    trained = train_models(randomized_experiment(world), actions, "sp", seed, truth=truth)
    registry = Registry(settings.model_registry)
    folder = save_run(
        trained, settings.model_registry.parent / "run", render_report(trained, f"demo {run}")
    )
    export_run(folder, registry, f"demo-{run}")
    registry.promote(f"demo-{run}")
    return BundleScorer(registry, default_catalog())


def _serve_features(settings: Settings, world: World) -> FeatureStoreAdapter:
    """The world's feature sources through Feast into the Redis online store."""
    build_sources(world, settings.feature_data)
    store = FeatureStoreAdapter(
        settings, settings.feature_repo, settings.feature_data, project=settings.feature_project
    )
    store.apply()
    with contextlib.redirect_stdout(io.StringIO()):  # Feast prints a progress report per view
        store.materialize(AS_OF - timedelta(days=2), AS_OF + timedelta(days=1))
    return store


@contextlib.contextmanager
def _worker_process(engine: Settings, price: float) -> Iterator[subprocess.Popen[bytes]]:
    """`nba worker` as its own process on the demo's settings; SIGTERM and wait at the end."""
    env = {**os.environ, **engine.environment(), "NBA_PACING_INITIAL_PRICE": f"{price:.6g}"}
    log_path = engine.model_registry.parent / "worker.log"
    with log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
        worker = subprocess.Popen(  # noqa: S603  # our own CLI, with our settings
            [sys.executable, "-m", "nba", "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield worker
    except BaseException:
        tail = log_path.read_text(errors="replace").splitlines()[-15:]
        sys.stderr.write("\n".join(["worker log (last lines):", *tail]) + "\n")
        raise
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)


def _create_topics(settings: Settings, names: list[str]) -> None:
    admin = kafka_clients.admin(settings)
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=settings.topic_partitions, replication_factor=1) for n in names]
    )
    for future in futures.values():
        future.result(timeout=30)


def run_demo(settings: Settings, options: DemoOptions, console: Console) -> dict[str, object]:
    already = {n for n in ("kafka", "redis") if all(s.running for s in stack.status(settings, [n]))}
    console.print("[bold]1/7[/] starting the local Kafka broker and Redis ...")
    stack.up(settings, ["kafka", "redis"])
    try:
        return _run(settings, options, console)
    finally:
        started = [n for n in ("kafka", "redis") if n not in already]
        if started:
            console.print(f"[bold]7/7[/] stopping what the demo started: {', '.join(started)}")
            stack.down(settings, started)


def _run(settings: Settings, options: DemoOptions, console: Console) -> dict[str, object]:
    run = uuid.uuid4().hex[:8]
    topics = {
        k: f"{v}.demo-{run}"
        for k, v in {
            "events": settings.topic_events,
            "actions": settings.topic_actions,
            "outcomes": settings.topic_outcomes,
            "dlq": settings.topic_dlq,
        }.items()
    }
    _create_topics(settings, list(topics.values()))
    console.print(
        f"[bold]2/7[/] simulating {options.customers:,} customers (seed {options.seed}) ..."
    )
    world = build_world(validated(n_customers=options.customers, seed=options.seed))
    engine = _demo_settings(settings, options, run, topics)
    console.print(
        "[bold]3/7[/] training the models on another world's randomized experiment, exporting "
        "the ONNX bundle ..."
    )
    elsewhere = build_world(validated(n_customers=options.customers, seed=options.seed + 1))
    scorer = _train_and_serve(engine, elsewhere, run, options.seed)
    console.print(
        "[bold]4/7[/] feature jobs (CLV, RFM, personas), feast apply, materialize to Redis ..."
    )
    features = _serve_features(engine, world)
    wanted = int(options.rate * options.seconds)
    events = generate_events(world, days=days_holding(world, wanted))
    price = _initial_pacer(engine, world, features, scorer).price
    console.print(
        f"[bold]5/7[/] starting `nba worker`, replaying {wanted:,} events at "
        f"{options.rate:,.0f}/s and deciding ..."
    )
    replayed: list[ReplayStats] = []
    with _worker_process(engine, price) as worker:
        _send_poison(settings, topics["events"])  # the worker is consuming once it saw them
        wait_for_events(engine, len(POISON), 120, alive=lambda: worker.poll() is None)
        since_ms = time.time() * 1000
        with Progress(console=console, transient=False) as progress:
            sent_bar = progress.add_task("events sent", total=wanted)
            seen_bar = progress.add_task("events processed", total=wanted + len(POISON))
            sender = threading.Thread(
                target=lambda: replayed.append(
                    replay_events(
                        events,
                        kafka_clients.producer(settings),
                        topics["events"],
                        options.rate,
                        limit=wanted,
                        on_progress=lambda k: progress.advance(sent_bar, k),
                    )
                ),
                daemon=True,
            )
            sender.start()
            while sender.is_alive() or progress.tasks[1].completed < wanted + len(POISON):
                seen = events_processed_or_none(engine)
                if worker.poll() is not None:
                    raise RuntimeError(f"the worker stopped (exit code {worker.returncode})")
                if seen is not None:
                    progress.update(seen_bar, completed=seen)
                time.sleep(0.2)
        consumed = int(events_processed_or_none(engine) or 0)
    totals = Counter(consumed=consumed, invalid=len(read_topic(engine, engine.topic_dlq)))
    latencies = action_latencies(engine, since_ms)
    ledger = BudgetLedger(redis_client(engine), engine.budget_period, engine.budget)

    console.print("[bold]6/7[/] reading nba-actions as the CRM would, and emitting outcomes ...")
    actions = [json.loads(v) for v in read_topic(engine, topics["actions"])]
    actions = list({a["action_id"]: a for a in actions}.values())  # the CRM dedupes on action_id
    choice = np.zeros(world.n, dtype=np.int64)
    index = {c: i for i, c in enumerate(world.customers["customer_id"].astype(str))}
    decided_rows = np.array([index[str(a["customer_id"])] for a in actions], dtype=np.int64)
    names = list(default_catalog().names)
    choice[decided_rows] = [names.index(a["action"]) for a in actions]
    _emit_outcomes(
        settings,
        world,
        topics["outcomes"],
        decided_rows,
        choice[decided_rows],
        [a["action_id"] for a in actions],
    )
    feedback, report_path = _close_the_loop(engine, world)
    return summarize(
        console,
        DemoRun(
            world=world,
            actions=actions,
            choice=choice,
            decided_rows=decided_rows,
            spent=ledger.spent(),
            budget=options.budget,
            totals=totals,
            latencies=latencies,
            replay=replayed[0] if replayed else None,
            feedback=feedback,
            report_path=report_path,
            registry=engine.model_registry,
            p_churn=scorer.predict(feature_matrix(world.customers))[0],
        ),
    )


def _close_the_loop(engine: Settings, world: World) -> tuple[Feedback, Path]:
    """The experiment readout and the decision report, from the demo's own topics."""
    feedback = load_feedback(engine)
    snapshot_dir = engine.model_registry.parent
    world.customers.to_parquet(snapshot_dir / "customers.parquet")
    path = decision_report(engine, snapshot_dir, snapshot_dir / "report.html", feedback)
    return feedback, path


POISON: tuple[tuple[bytes, list[tuple[str, str | bytes | None]]], ...] = (
    (b"{not json", [("schema-version", b"1")]),
    (
        b'{"event_id":"p1","customer_id":"C00000001","event_type":"teleport",'
        b'"occurred_at":"2026-01-01T00:00:00Z"}',
        [("schema-version", b"1")],
    ),
    (b'{"event_id":"p2","customer_id":"C00000001"}', [("schema-version", b"1")]),
    (b"x" * 100_000, [("schema-version", b"1")]),
    (b'{"event_id":"p3"}', []),
)


def _send_poison(settings: Settings, topic: str) -> None:
    """A few malformed messages, as a buggy producer would send: they must reach the DLQ."""
    producer = kafka_clients.producer(settings)
    for value, headers in POISON:
        producer.produce(topic, key=b"C00000001", value=value, headers=headers)
    producer.flush(30)


def _emit_outcomes(
    settings: Settings,
    world: World,
    topic: str,
    rows: np.ndarray,
    chosen: np.ndarray,
    action_ids: list[object],
) -> None:
    producer = kafka_clients.producer(settings)
    # Outcomes happen after the decisions: the world's renewal dates are moved to start now.
    dated = outcome_events(
        world, rows, chosen, [str(a) for a in action_ids], as_of=datetime.now(UTC)
    )
    for message in dated:
        producer.produce(
            topic, key=str(message["customer_id"]).encode(), value=json.dumps(message).encode()
        )
    producer.flush(30)
