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
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka import TopicPartition

from model_export.manifest import Registry
from model_export.runs import export_run, save_run
from model_export.training import train_models
from nba.commands.features import build_sources
from nba.local_servers import stack
from nba.observe import wait_for_events
from nba.replay import replay_events
from policies.catalog import default_catalog
from simulator.config import WorldConfig
from simulator.datasets import randomized_experiment
from simulator.events import generate_events
from simulator.world import AS_OF, World, build_world
from stream_app import kafka_clients
from stream_app.feature_store import FeatureStoreAdapter
from stream_app.ledger import BudgetLedger
from stream_app.redis_clients import redis_client
from stream_app.settings import Settings, load_settings
from tests.conftest import TopicFactory, drain, free_port, own_infra_settings
from tests.stream_app.test_decision_loop_integration import POISON

pytestmark = pytest.mark.integration


_STARTED: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def _no_worker_left_behind() -> Iterator[None]:
    """A failing test must not leave a worker running into the next one."""
    yield
    while _STARTED:
        worker = _STARTED.pop()
        if worker.poll() is None:
            worker.kill()
        worker.wait(timeout=30)


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # the child keeps its own copy of the file descriptor
        worker = subprocess.Popen(  # the real CLI, as an operator runs it
            [sys.executable, "-m", "nba", "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    _STARTED.append(worker)
    return worker


def _wait_ready(log: Path, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if log.exists() and "worker: consuming" in log.read_text():
            return
        time.sleep(0.2)
    raise AssertionError(f"the worker did not start: {log.read_text() if log.exists() else ''}")


def _consumed(log: Path) -> int:
    """The count in the worker's "worker: stopped after 1,234 events; ..." line."""
    line = next(x for x in log.read_text().splitlines() if x.startswith("worker: stopped after"))
    return int(line.split("after ")[1].split(" ")[0].replace(",", ""))


_TRIGGERS: frozenset[str] = Settings.model_fields["trigger_event_types"].default


def _trigger_customers(events: Any, total: int) -> set[str]:
    """Customers with a trigger among the first ``total`` events: the streams in these tests
    are shorter than the 24 h trigger interval, so each gets exactly one decision."""
    return {
        json.loads(payload)["customer_id"]
        for _, payload in events.json_lines(0, total)
        if json.loads(payload)["event_type"] in _TRIGGERS
    }


def _decisions_until_decided(
    kafka_bootstrap: str, env: dict[str, str], group: str, expected: set[str], timeout_s: float
) -> dict[str, list[bytes]]:
    """Every action message per action_id, as a read_committed reader (the CRM) sees them,
    read until each expected customer has a decision (or the time is up: a worker may first
    wait out a departed member's session), then 3 s more for any late duplicate."""
    reader = kafka_clients.consumer(
        load_settings(kafka_bootstrap=kafka_bootstrap),
        group,
        **{"isolation.level": "read_committed"},
    )
    reader.subscribe([env["NBA_TOPIC_ACTIONS"]])
    seen: dict[str, list[bytes]] = {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _customers(seen) != expected:
        for msg in drain(reader, 100_000, timeout_s=3):
            seen.setdefault(json.loads(msg.value())["action_id"], []).append(msg.value())
    for msg in drain(reader, 100_000, timeout_s=3):
        seen.setdefault(json.loads(msg.value())["action_id"], []).append(msg.value())
    reader.close()
    return seen


def _undecided(
    kafka_bootstrap: str, env: dict[str, str], missing: set[str], logs: list[Path]
) -> str:
    """For a failure message: where the undecided customers' events sit on the topic, what the
    group committed, and what the workers' decide path logged."""
    settings = load_settings(kafka_bootstrap=kafka_bootstrap)
    reader = kafka_clients.consumer(settings, f"diagnose-{uuid.uuid4().hex[:8]}")
    reader.subscribe([env["NBA_TOPIC_EVENTS"]])
    where = [
        (m.partition(), m.offset(), json.loads(m.value())["event_type"])
        for m in drain(reader, 100_000, timeout_s=10)
        if json.loads(m.value()).get("customer_id") in missing
    ]
    partitions = [TopicPartition(env["NBA_TOPIC_EVENTS"], p) for p in range(3)]
    group = kafka_clients.consumer(settings, env["NBA_CONSUMER_GROUP"])
    committed = [(tp.partition, tp.offset) for tp in group.committed(partitions, timeout=10)]
    group.close()
    reader.close()
    said = [x for log in logs for x in log.read_text().splitlines() if "decide" in x]
    return f"undecided {sorted(missing)}: events {where}; committed {committed}; logs {said}"


def _two_workers(env: dict[str, str], tmp_path: Path) -> list[subprocess.Popen[bytes]]:
    """Two workers of one group (logs a.log and b.log), each ready."""
    env_b = {**env, "NBA_METRICS_PORT": str(free_port())}
    workers = [_start(env, tmp_path / "a.log"), _start(env_b, tmp_path / "b.log")]
    for name in ("a", "b"):
        _wait_ready(tmp_path / f"{name}.log")
    return workers


def _customers(seen: dict[str, list[bytes]]) -> set[str]:
    return {json.loads(next(iter(v)))["customer_id"] for v in seen.values()}


def _prepare(
    kafka_bootstrap: str,
    redis_url: str,
    make_topic: TopicFactory,
    tmp_path: Path,
    redis_cluster: bool = False,
) -> tuple[dict[str, str], Settings, World, str]:
    """A promoted bundle, materialized features, fresh topics, and the worker's environment
    (``redis_cluster``: ``redis_url`` names a node of a Redis Cluster)."""
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
        "NBA_REDIS_CLUSTER": str(redis_cluster).lower(),
        "NBA_MODEL_REGISTRY": str(registry.root),
        "NBA_FEATURE_REPO": str(tmp_path / "repo"),
        "NBA_FEATURE_DATA": str(tmp_path / "features"),
        # Feast's project is the Redis key prefix: tests sharing a Redis never see each other's
        # rows (same simulated customers, same event times otherwise).
        "NBA_FEATURE_PROJECT": f"w{run}",
        "NBA_TOPIC_EVENTS": make_topic("events", partitions=3),
        "NBA_TOPIC_ACTIONS": make_topic("actions", partitions=3),
        "NBA_TOPIC_DLQ": make_topic("dlq", partitions=1),
        "NBA_TOPIC_OUTCOMES": make_topic("outcomes", partitions=3),
        "NBA_STATE_DIR": str(tmp_path / "state"),
        "NBA_CONSUMER_GROUP": f"worker-{run}",
        "NBA_BUDGET_PERIOD": f"test-{run}",
        "NBA_BUDGET": "5000",
        "NBA_BATCH_SIZE": "50",
        "NBA_METRICS_PORT": str(free_port()),
    }
    build_sources(world, tmp_path / "features")
    settings = load_settings(
        kafka_bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        redis_cluster=redis_cluster,
        feature_repo=tmp_path / "repo",
        feature_data=tmp_path / "features",
        feature_project=f"w{run}",
    )
    features = FeatureStoreAdapter(
        settings, tmp_path / "repo", tmp_path / "features", project=settings.feature_project
    )
    features.apply()
    features.materialize(AS_OF - timedelta(days=2), AS_OF + timedelta(days=1))

    return env, settings, world, run


def test_sigterm_loses_nothing_and_a_restart_carries_on(
    kafka_bootstrap: str, redis_url: str, make_topic: TopicFactory, tmp_path: Path
) -> None:
    env, settings, world, run = _prepare(kafka_bootstrap, redis_url, make_topic, tmp_path)
    env["NBA_LOG_LEVEL"] = "INFO"  # rebalances and commits in the logs, for a failure
    events = generate_events(world, days=1.0)
    total = min(3_000, len(events))
    first = _start(env, tmp_path / "w1.log")
    _wait_ready(tmp_path / "w1.log")
    sender = threading.Thread(
        target=replay_events,
        args=(events, kafka_clients.producer(settings), env["NBA_TOPIC_EVENTS"], 600.0, total),
    )
    sender.start()  # about 5 s of traffic
    wait_for_events(settings_of(env), 300, 90)  # it has joined the group and decides
    first.send_signal(signal.SIGTERM)  # while events are still arriving
    assert first.wait(timeout=60) == 0, (tmp_path / "w1.log").read_text()
    sender.join()
    log = (tmp_path / "w1.log").read_text()
    assert "offsets committed" in log and "Traceback" not in log

    first_consumed = _consumed(tmp_path / "w1.log")
    assert 0 < first_consumed < total, "the first worker stopped mid-stream"
    second = _start(env, tmp_path / "w2.log")
    _wait_ready(tmp_path / "w2.log")
    # The restarted worker takes over from the committed offsets: it must get through everything
    # the first left (however long its join takes), and every trigger customer gets a decision.
    wait_for_events(settings_of(env), total - first_consumed, 180)
    expected = _trigger_customers(events, total)
    ids = _decisions_until_decided(kafka_bootstrap, env, f"reader-{run}", expected, 60)
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=60) == 0, (tmp_path / "w2.log").read_text()

    logs = [tmp_path / "w1.log", tmp_path / "w2.log"]
    missing = expected - _customers(ids)
    assert not missing, _undecided(kafka_bootstrap, env, missing, logs)
    assert first_consumed + _consumed(tmp_path / "w2.log") >= total
    assert all(len(v) == 1 for v in ids.values()), "one action message per action_id"
    spent = sum(json.loads(next(iter(v)))["cost"] for v in ids.values())
    assert spent <= 5_000 + 1e-6

    # A new consumer group replays the topic from offset 0: every decision was delivered, so
    # nothing is published again, and not a dollar more goes into the ledger.
    ledger = BudgetLedger(redis.Redis.from_url(redis_url), env["NBA_BUDGET_PERIOD"], 5_000.0)
    before = ledger.spent()
    counter = kafka_clients.consumer(load_settings(kafka_bootstrap=kafka_bootstrap), f"n-{run}")
    counter.subscribe([env["NBA_TOPIC_ACTIONS"]])
    published_before = len(drain(counter, 100_000, timeout_s=20))
    counter.close()
    replayer = _start({**env, "NBA_CONSUMER_GROUP": f"replay-{run}"}, tmp_path / "w3.log")
    _wait_ready(tmp_path / "w3.log")
    wait_for_events(settings_of(env), total, 180)
    replayer.send_signal(signal.SIGTERM)
    assert replayer.wait(timeout=60) == 0, (tmp_path / "w3.log").read_text()
    reader = kafka_clients.consumer(load_settings(kafka_bootstrap=kafka_bootstrap), f"again-{run}")
    reader.subscribe([env["NBA_TOPIC_ACTIONS"]])
    everything = drain(reader, 100_000, timeout_s=20)
    reader.close()
    assert len(everything) == published_before, "delivered decisions are not published again"
    same = [m.value() in ids.get(json.loads(m.value())["action_id"], set()) for m in everything]
    assert all(same), "only the action_ids decided before, each with the same contents"
    assert ledger.spent() == before, "a replay spends nothing more"


SECRET = "s3cr3t-never-logged-Zq9"  # noqa: S105  # a test value, the point of the test


def test_prometheus_scrapes_the_worker_and_the_series_move(
    kafka_bootstrap: str, redis_url: str, make_topic: TopicFactory, tmp_path: Path
) -> None:
    env, settings, world, run = _prepare(kafka_bootstrap, redis_url, make_topic, tmp_path)
    env["NBA_KAFKA_SASL_PASSWORD"] = SECRET  # set, never to be seen in logs or metrics
    observer = own_infra_settings(tmp_path / "prometheus")
    observer = observer.model_copy(
        update={"metrics_port": int(env["NBA_METRICS_PORT"]), "prometheus_scrape_interval_s": 1.0}
    )
    stack.up(observer, ["prometheus"])
    worker = _start(env, tmp_path / "w.log")
    try:
        _wait_ready(tmp_path / "w.log")
        events = generate_events(world, days=1.0)
        producer = kafka_clients.producer(settings)
        replay_events(events, producer, env["NBA_TOPIC_EVENTS"], rate=5_000, limit=1_000)
        first = _wait_for(observer, "sum(nba_events_total)", lambda v: v > 0)
        replay_events(events, producer, env["NBA_TOPIC_EVENTS"], rate=5_000, limit=2_000)
        _wait_for(observer, "sum(nba_events_total)", lambda v: v > first)
        for series in (
            "sum(nba_decisions_total)",
            "nba_budget_spent_dollars",
            "sum(nba_decision_latency_seconds_count)",
            'sum(nba_step_seconds_count{step="score"})',
            'sum(nba_step_seconds_count{step="commit"})',
            "nba_consumer_lag_messages",
            'min(nba_dependency_up{dependency="redis"})',
        ):
            _wait_for(observer, series, lambda v: v >= 0)
        assert _wait_for(observer, "sum(nba_decisions_total)", lambda v: v > 0) > 0
        assert _wait_for(observer, "min(nba_dependency_up)", lambda v: v == 1) == 1
        info = _query(observer, "nba_engine_info")
        assert info and info[0]["metric"]["model_version"] == "w1"
        base = f"http://127.0.0.1:{env['NBA_METRICS_PORT']}"
        assert json.loads(_get(f"{base}/healthz")) == {"status": "ok"}
        ready = json.loads(_get(f"{base}/readyz"))
        assert ready == {
            "ready": True,
            "checks": {"model_loaded": True, "kafka": True, "redis": True},
        }
        assert SECRET not in _get(f"{base}/metrics")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        stack.down(observer, ["prometheus"])
    assert SECRET not in (tmp_path / "w.log").read_text()


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310  # loopback worker
        return str(response.read().decode())


def _query(settings: Settings, expression: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{settings.prometheus_port}/api/v1/query?query={urllib.parse.quote(expression)}"
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310  # loopback Prometheus
        body = json.loads(response.read())
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _wait_for(
    settings: Settings, expression: str, ok: Callable[[float], bool], timeout_s: float = 60.0
) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = _query(settings, expression)
        if result and ok(float(result[0]["value"][1])):
            return float(result[0]["value"][1])
        time.sleep(0.5)
    raise AssertionError(
        f"Prometheus never saw {expression} as expected: {_query(settings, expression)}"
    )


def test_kill_9_of_one_of_two_workers_loses_nothing_and_never_doubles_an_action(
    kafka_bootstrap: str, redis_url: str, make_topic: TopicFactory, tmp_path: Path
) -> None:
    env, settings, world, run = _prepare(kafka_bootstrap, redis_url, make_topic, tmp_path)
    env["NBA_LOG_LEVEL"] = "INFO"  # rebalances in the logs, for a failure
    workers = _two_workers(env, tmp_path)
    events = generate_events(world, days=0.5)
    total = min(4_000, len(events))
    sender = threading.Thread(
        target=replay_events,
        args=(events, kafka_clients.producer(settings), env["NBA_TOPIC_EVENTS"], 800.0, total),
    )
    sender.start()
    time.sleep(2.0)
    workers[0].kill()  # SIGKILL mid-stream: no graceful anything
    workers[0].wait(timeout=30)
    sender.join()
    workers[0] = _start(env, tmp_path / "a2.log")  # restarted, same group
    _wait_ready(tmp_path / "a2.log")

    expected = _trigger_customers(events, total)
    seen = _decisions_until_decided(kafka_bootstrap, env, f"reader-{run}", expected, 180)
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)

    logs = [tmp_path / f"{name}.log" for name in ("a", "b", "a2")]
    missing = expected - _customers(seen)
    assert not missing, _undecided(kafka_bootstrap, env, missing, logs)
    assert all(len(v) == 1 for v in seen.values()), "one action message per action_id"
    per_customer = [json.loads(next(iter(v)))["customer_id"] for v in seen.values()]
    assert len(per_customer) == len(set(per_customer)), "a customer got two different decisions"
    assert sum(json.loads(next(iter(v)))["cost"] for v in seen.values()) <= 5_000 + 1e-6


def test_two_workers_on_a_redis_cluster_share_one_budget_and_decide_each_trigger_once(
    kafka_bootstrap: str, redis_cluster_settings: Settings, make_topic: TopicFactory, tmp_path: Path
) -> None:
    """Ledger, decision state, contacts, streaming aggregates and Feast's online store on a
    3-master Redis Cluster, shared by two workers: a budget that binds is never exceeded."""
    url = redis_cluster_settings.effective_redis_url()
    env, settings, world, run = _prepare(kafka_bootstrap, url, make_topic, tmp_path, True)
    budget = 1_500.0
    env |= {"NBA_BUDGET": str(budget), "NBA_PACING_PERIOD_S": "2", "NBA_LOG_LEVEL": "INFO"}
    workers = _two_workers(env, tmp_path)
    events = generate_events(world, days=0.5)
    total = min(4_000, len(events))
    replay_events(events, kafka_clients.producer(settings), env["NBA_TOPIC_EVENTS"], 1_000.0, total)

    expected = _trigger_customers(events, total)
    seen = _decisions_until_decided(kafka_bootstrap, env, f"reader-{run}", expected, 180)
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
    logs = [tmp_path / f"{name}.log" for name in ("a", "b")]
    assert all(_consumed(log) > 0 for log in logs), "both workers took a share"
    missing = expected - _customers(seen)
    assert not missing, _undecided(kafka_bootstrap, env, missing, logs)
    assert all(len(v) == 1 for v in seen.values()), "one action message per action_id"
    actions = [json.loads(next(iter(v))) for v in seen.values()]
    spent = sum(a["cost"] for a in actions)
    ledger = BudgetLedger(redis_client(settings), env["NBA_BUDGET_PERIOD"], budget)
    assert ledger.spent() == pytest.approx(spent)
    assert budget - max(a["cost"] for a in actions) < spent <= budget + 1e-6, "it binds"
    per_customer = Counter(key for key, _ in events.json_lines(0, total))
    busiest = max(expected, key=per_customer.__getitem__)
    assert _windows_of(settings, busiest)["events_24h"] > 0, "live windows reached Feast"


def settings_of(env: dict[str, str]) -> Settings:
    """What the worker started with ``env`` serves /metrics on."""
    return load_settings(metrics_port=int(env["NBA_METRICS_PORT"]))


def _windows_of(settings: Settings, customer: str) -> dict[str, int]:
    row = FeatureStoreAdapter(
        settings, settings.feature_repo, settings.feature_data, project=settings.feature_project
    ).read_batch([customer])
    return {k: int(row.iloc[0][k]) for k in ("events_1h", "events_24h", "events_7d")}


def test_streaming_aggregates_reach_feast_survive_a_restart_and_outcomes_are_counted(
    kafka_bootstrap: str, redis_url: str, make_topic: TopicFactory, tmp_path: Path
) -> None:
    """The aggregates' Redis state: windows written to the online store, a restarted worker
    goes on from the stored state; the outcome agent counts each outcome once per arm and
    action."""
    from stream_app.aggregates import updated, windows
    from stream_app.messages import EngagementEvent
    from stream_app.outcome_feed import OutcomeFeed

    env, settings, world, run = _prepare(kafka_bootstrap, redis_url, make_topic, tmp_path)
    env["NBA_LOG_LEVEL"] = "INFO"  # rebalances in the logs, for a failure
    events = generate_events(world, days=1.0)
    lines = list(events.json_lines(0, 1_500))
    producer = kafka_clients.producer(settings)
    replay_events(events, producer, env["NBA_TOPIC_EVENTS"], rate=20_000, limit=1_500)
    for value, headers, _ in POISON:  # the worker must shrug these off into the DLQ
        producer.produce(env["NBA_TOPIC_EVENTS"], key=b"C00000001", value=value, headers=headers)
    worker = _start(env, tmp_path / "w1.log")
    _wait_ready(tmp_path / "w1.log")
    busiest = max({c for c, _ in lines}, key=lambda c: sum(1 for k, _ in lines if k == c))
    mine = [EngagementEvent.model_validate_json(v) for c, v in lines if c == busiest]
    expected = windows(updated(None, list(enumerate(mine))))
    wait_for_events(settings_of(env), 1_500 + len(POISON), 180)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _windows_of(settings, busiest) != {
        k: expected[k] for k in ("events_1h", "events_24h", "events_7d")
    }:
        time.sleep(0.5)
    assert _windows_of(settings, busiest)["events_7d"] == expected["events_7d"] > 1

    reader = kafka_clients.consumer(
        load_settings(kafka_bootstrap=kafka_bootstrap),
        f"r-{run}",
        **{"isolation.level": "read_committed"},
    )
    reader.subscribe([env["NBA_TOPIC_ACTIONS"]])
    messages = drain(reader, 100_000, timeout_s=10)
    actions = [json.loads(m.value()) for m in messages]
    reader.close()
    # Schema version 2: the customer's RFM segment and persona from the feature store.
    assert all(dict(m.headers() or [])["schema-version"] == b"2" for m in messages)
    assert all(a["rfm_segment"] and a["persona"].startswith("persona ") for a in actions)
    feed = OutcomeFeed(redis.Redis.from_url(redis_url), env["NBA_TOPIC_OUTCOMES"])
    outcome = {
        "customer_id": actions[0]["customer_id"],
        "outcome_type": "renewed",
        "value": 100.0,
        "occurred_at": "2027-01-01T00:00:00+00:00",
        "action_id": actions[0]["action_id"],
    }
    for value in (json.dumps(outcome), json.dumps(outcome), "{broken"):  # a duplicate, a bad one
        producer.produce(env["NBA_TOPIC_OUTCOMES"], key=b"k", value=value.encode())
    producer.flush(30)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0

    # One more event for the busiest customer, one hour after their last: the restarted worker
    # must count it on top of the state the first one left in Redis.
    later = mine[-1].model_copy(
        update={
            "event_id": "after-restart",
            "occurred_at": max(e.occurred_at for e in mine) + timedelta(hours=1),
        }
    )
    producer.produce(
        env["NBA_TOPIC_EVENTS"],
        key=busiest.encode(),
        value=later.model_dump_json().encode(),
        headers=[("schema-version", b"1")],
    )
    producer.flush(30)
    second = _start(env, tmp_path / "w2.log")
    _wait_ready(tmp_path / "w2.log")
    want = windows(updated(None, list(enumerate([*mine, later]))))["events_7d"]
    wait_for_events(settings_of(env), 1, 180)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and (
        _windows_of(settings, busiest)["events_7d"] != want or not feed.counts()
    ):
        time.sleep(0.5)
    time.sleep(2.0)  # a redelivered duplicate would be counted by now
    counts = feed.counts()
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=60) == 0
    assert _windows_of(settings, busiest)["events_7d"] == want == expected["events_7d"] + 1
    key = f"{actions[0]['arm']}|{actions[0]['action']}|renewed"
    assert counts == {key: 1}, "the duplicate is not counted again, the broken one not at all"
    dlq = kafka_clients.consumer(load_settings(kafka_bootstrap=kafka_bootstrap), f"d-{run}")
    dlq.subscribe([env["NBA_TOPIC_DLQ"]])
    codes = sorted(json.loads(m.value())["error_code"] for m in drain(dlq, len(POISON)))
    dlq.close()
    assert codes == sorted(code for _, _, code in POISON)
