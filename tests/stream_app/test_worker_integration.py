"""`nba worker` as a process against the real broker and Redis: decisions flow, SIGTERM stops it
gracefully, and a restarted worker carries on from the committed offsets without losing events."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from model_export.manifest import Registry
from model_export.runs import export_run, save_run
from model_export.training import train_models
from policies.catalog import default_catalog
from simulator.config import WorldConfig
from simulator.datasets import randomized_experiment
from simulator.events import generate_events
from simulator.world import AS_OF, build_world
from stream_app import kafka_clients
from stream_app.commands.features import build_sources
from stream_app.feature_store import FeatureStoreAdapter
from stream_app.replay import replay_events
from stream_app.settings import load_settings
from tests.conftest import TopicFactory, drain

pytestmark = pytest.mark.integration


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # the child keeps its own copy of the file descriptor
        return subprocess.Popen(  # the real CLI, as an operator runs it
            [sys.executable, "-m", "stream_app", "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _wait_ready(log: Path, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if log.exists() and "worker: consuming" in log.read_text():
            return
        time.sleep(0.2)
    raise AssertionError(f"the worker did not start: {log.read_text() if log.exists() else ''}")


def _consumed(log: Path) -> int:
    last = log.read_text().strip().splitlines()[-1]  # "worker: stopped after 1,234 events; ..."
    return int(last.split("after ")[1].split(" ")[0].replace(",", ""))


def test_sigterm_loses_nothing_and_a_restart_carries_on(
    kafka_bootstrap: str, redis_url: str, make_topic: TopicFactory, tmp_path: Path
) -> None:
    world = build_world(WorldConfig(n_customers=3_000, seed=12))
    registry = Registry(tmp_path / "registry")
    trained = train_models(
        randomized_experiment(world), default_catalog().names, "t", seed=1, n_estimators=20
    )
    export_run(save_run(trained, tmp_path / "run", ""), registry, "w1")
    registry.promote("w1")
    run = uuid.uuid4().hex[:8]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NBA_")},
        "NBA_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "NBA_REDIS_URL": redis_url,
        "NBA_MODEL_REGISTRY": str(registry.root),
        "NBA_FEATURE_REPO": str(tmp_path / "repo"),
        "NBA_FEATURE_DATA": str(tmp_path / "features"),
        "NBA_TOPIC_EVENTS": make_topic("events", partitions=3),
        "NBA_TOPIC_ACTIONS": make_topic("actions", partitions=3),
        "NBA_TOPIC_DLQ": make_topic("dlq", partitions=1),
        "NBA_CONSUMER_GROUP": f"worker-{run}",
        "NBA_BUDGET_PERIOD": f"test-{run}",
        "NBA_BUDGET": "5000",
        "NBA_BATCH_SIZE": "50",
    }
    build_sources(world, tmp_path / "features")
    settings = load_settings(
        kafka_bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        feature_repo=tmp_path / "repo",
        feature_data=tmp_path / "features",
    )
    features = FeatureStoreAdapter(settings, tmp_path / "repo", tmp_path / "features")
    features.apply()
    features.materialize(AS_OF - timedelta(days=2), AS_OF + timedelta(days=1))

    events = generate_events(world, days=1.0)
    total = min(3_000, len(events))
    first = _start(env, tmp_path / "w1.log")
    _wait_ready(tmp_path / "w1.log")
    sender = threading.Thread(
        target=replay_events,
        args=(events, kafka_clients.producer(settings), env["NBA_TOPIC_EVENTS"], 600.0, total),
    )
    sender.start()  # about 5 s of traffic
    time.sleep(2.0)
    first.send_signal(signal.SIGTERM)  # while events are still arriving
    assert first.wait(timeout=60) == 0, (tmp_path / "w1.log").read_text()
    sender.join()
    log = (tmp_path / "w1.log").read_text()
    assert "offsets committed" in log and "Traceback" not in log

    second = _start(env, tmp_path / "w2.log")
    _wait_ready(tmp_path / "w2.log")
    reader = kafka_clients.consumer(load_settings(kafka_bootstrap=kafka_bootstrap), f"reader-{run}")
    reader.subscribe([env["NBA_TOPIC_ACTIONS"]])
    actions = drain(reader, 100_000, timeout_s=20)
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=60) == 0, (tmp_path / "w2.log").read_text()
    reader.close()

    consumed = [
        int(line.split("after ")[1].split(" ")[0].replace(",", ""))
        for line in [(tmp_path / f"w{k}.log").read_text().splitlines()[-1] for k in (1, 2)]
    ]
    assert sum(consumed) >= total, f"every event was consumed across the restart: {consumed}"
    ids: dict[str, set[bytes]] = {}
    for msg in actions:
        ids.setdefault(json.loads(msg.value())["action_id"], set()).add(msg.value())
    assert ids and all(len(v) == 1 for v in ids.values()), (
        "no action_id with two different contents"
    )
    spent = sum(json.loads(next(iter(v)))["cost"] for v in ids.values())
    assert spent <= 5_000 + 1e-6
