"""`nba infra` against the real servers: lifecycle, idempotence, persistence, and bad input."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from confluent_kafka import TopicPartition

from nba.local_servers import stack
from policies.errors import InfraError
from stream_app import kafka_clients
from stream_app.ledger import BudgetLedger
from stream_app.redis_clients import redis_client
from stream_app.settings import Settings, load_settings
from tests.conftest import drain, free_port, free_port_block, own_infra_settings

pytestmark = pytest.mark.integration


def _pids(settings: Settings) -> dict[str, int | None]:
    return {state.name: state.pid for state in stack.status(settings)}


def test_up_status_down_twice_and_data_survives_a_restart(tmp_path: Path) -> None:
    settings = own_infra_settings(tmp_path / "state")
    client_settings = load_settings(kafka_bootstrap=settings.local_kafka_bootstrap)
    try:
        states = stack.up(settings)
        assert all(state.healthy for state in states), states
        first_pids = _pids(settings)
        assert stack.up(settings) and _pids(settings) == first_pids, "second up starts nothing new"

        producer = kafka_clients.producer(client_settings)
        for i in range(10):
            producer.produce("persisted", key=b"k", value=str(i).encode())
        assert producer.flush(30) == 0
        del producer  # confluent-kafka closes a producer when it is dropped
        consumer = kafka_clients.consumer(client_settings, "persist-group")
        consumer.subscribe(["persisted"])
        head = drain(consumer, 4)
        seen, partition = [int(m.value()) for m in head], head[-1].partition()
        consumer.commit(offsets=[TopicPartition("persisted", partition, 4)], asynchronous=False)
        consumer.close()
        redis.Redis.from_url(settings.local_redis_url).set("survives", "yes")

        assert stack.down(settings) == ["prometheus", "redis", "kafka"]
        assert all(not state.running for state in stack.status(settings))
        assert stack.down(settings) == []

        stack.up(settings)
        assert all(state.healthy for state in stack.status(settings))
        consumer = kafka_clients.consumer(client_settings, "persist-group")
        consumer.subscribe(["persisted"])
        resumed = [int(m.value()) for m in drain(consumer, 6)]
        consumer.close()
        assert seen == [0, 1, 2, 3]
        assert resumed == [4, 5, 6, 7, 8, 9], "the committed offset survived the broker restart"
        assert redis.Redis.from_url(settings.local_redis_url).get("survives") == b"yes"
    finally:
        stack.down(settings)


def test_busy_port_is_refused_and_nothing_is_left_running(tmp_path: Path) -> None:
    settings = own_infra_settings(tmp_path / "state")
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", settings.prometheus_port))
        blocker.listen()
        with pytest.raises(InfraError, match="NBA_PROMETHEUS_PORT"):
            stack.up(settings)
    assert all(not state.running for state in stack.status(settings)), "kafka/redis rolled back"


def test_unwritable_data_dir_is_refused(tmp_path: Path) -> None:
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("x")
    settings = own_infra_settings(blocked / "state")
    with pytest.raises(InfraError, match="NBA_STATE_DIR"):
        stack.up(settings, ["redis"])


def test_missing_java_is_one_clear_line(tmp_path: Path) -> None:
    empty_path = tmp_path / "bin"
    empty_path.mkdir()
    settings = own_infra_settings(tmp_path / "state")
    env = {
        "PATH": str(empty_path),
        "NBA_STATE_DIR": str(settings.state_dir),
        "NBA_KAFKA_PORT": str(free_port()),
        "NBA_KAFKA_CONTROLLER_PORT": str(free_port()),
    }
    result = subprocess.run(
        [sys.executable, "-m", "nba", "infra", "up", "--only", "kafka"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "Java is not installed" in result.stderr
    assert "Traceback" not in result.stderr


def test_nba_infra_up_redis_cluster_forms_a_cluster_that_reforms_after_a_restart(
    tmp_path: Path,
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NBA_")},
        "NBA_STATE_DIR": str(tmp_path / "state"),
        "NBA_REDIS_CLUSTER_PORT": str(free_port_block(6)),
    }

    def infra(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "nba", "infra", *args, "--only", "redis", "--redis-cluster"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    settings = load_settings(
        state_dir=tmp_path / "state",
        redis_cluster=True,
        redis_cluster_port=int(env["NBA_REDIS_CLUSTER_PORT"]),
    )
    try:
        shown = infra("up")
        assert shown.count("healthy, cluster ok") == 3, shown
        client = redis_client(settings)
        ledger = BudgetLedger(client, "p", 100.0)
        assert ledger.reserve("a-1", "call", 60.0).granted
        assert len({n.name for n in client.get_primaries()}) == 3
        assert "stopped: redis-cluster-2, redis-cluster-1, redis-cluster-0" in infra("down")
        shown = infra("up")  # the nodes kept their slot map: the same cluster again
        assert shown.count("healthy, cluster ok") == 3, shown
        assert BudgetLedger(redis_client(settings), "p", 100.0).spent() == 60.0
    finally:
        stack.down(settings, ["redis"])
