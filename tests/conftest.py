"""Session fixtures for integration tests.

`NBA_KAFKA_BOOTSTRAP` / `NBA_REDIS_URL` point the tests at running servers; when unset, the
project's own Kafka broker and Redis are started once per session on free ports, in a temporary
state dir, and stopped at the end. Every test gets topics of its own, named uniquely per run.
Tests of the engine's Redis state run on a single Redis and on a Redis Cluster
(``redis_settings``): the project's local 3-master cluster, started on first use.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Message
from confluent_kafka.admin import AdminClient, NewTopic

from ingest.importer import import_project
from ingest.project import Project, load_project
from model_export.manifest import Registry
from model_export.runs import export_run, save_run
from model_export.training import train_models
from nba.local_servers import stack
from nba.local_servers.process import port_is_free
from policies.catalog import default_catalog
from simulator.config import WorldConfig
from simulator.datasets import randomized_experiment
from simulator.world import build_world
from stream_app.decision_loop import RenewableProducer
from stream_app.kafka_clients import LIBRDKAFKA_LOGGER, transactional_producer
from stream_app.redis_clients import RedisClient, redis_client
from stream_app.settings import Settings, load_settings


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_block(size: int) -> int:
    """The first of ``size`` consecutive free ports (a local Redis Cluster takes six)."""
    while True:
        first = free_port()
        if first + size <= 65_535 and all(port_is_free(first + i) for i in range(size)):
            return first


def own_infra_settings(state_dir: Path) -> Settings:
    """Settings for a private copy of the local infrastructure on free ports."""
    return load_settings(
        state_dir=state_dir,
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        redis_port=free_port(),
        prometheus_port=free_port(),
        metrics_port=free_port(),
    )


@pytest.fixture(scope="session")
def env_settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def session_infra(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return own_infra_settings(tmp_path_factory.mktemp("nba-infra"))


@pytest.fixture(scope="session")
def kafka_bootstrap(env_settings: Settings, session_infra: Settings) -> Iterator[str]:
    if env_settings.kafka_bootstrap:
        yield env_settings.kafka_bootstrap
        return
    stack.up(session_infra, ["kafka"])
    yield session_infra.local_kafka_bootstrap
    stack.down(session_infra, ["kafka"])


@pytest.fixture(scope="session")
def redis_url(env_settings: Settings, session_infra: Settings) -> Iterator[str]:
    if env_settings.redis_url:
        yield env_settings.effective_redis_url()
        return
    stack.up(session_infra, ["redis"])
    yield session_infra.local_redis_url
    stack.down(session_infra, ["redis"])


@pytest.fixture(scope="session")
def redis_cluster_settings(
    env_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """Settings on a Redis Cluster: NBA_REDIS_URL's when NBA_REDIS_CLUSTER is set, else the
    project's own local cluster (`nba infra up --redis-cluster`) on free ports."""
    if env_settings.redis_cluster and env_settings.redis_url:
        yield env_settings
        return
    settings = load_settings(
        state_dir=tmp_path_factory.mktemp("nba-cluster"),
        redis_cluster=True,
        redis_cluster_port=free_port_block(6),
    )
    stack.up(settings, ["redis"])
    yield settings
    stack.down(settings, ["redis"])


@pytest.fixture(params=["redis", "redis-cluster"])
def redis_settings(request: pytest.FixtureRequest) -> Settings:
    """The engine's Redis settings, once on a single Redis and once on a Redis Cluster."""
    if request.param == "redis":
        return load_settings(redis_url=request.getfixturevalue("redis_url"), redis_cluster=False)
    cluster: Settings = request.getfixturevalue("redis_cluster_settings")
    return cluster


@pytest.fixture
def connect_redis(redis_settings: Settings) -> Iterator[Callable[[], RedisClient]]:
    """A new client of ``redis_settings``' Redis per call (a worker's own), closed afterwards."""
    opened: list[RedisClient] = []

    def connect() -> RedisClient:
        opened.append(redis_client(redis_settings))
        return opened[-1]

    yield connect
    for client in opened:
        client.close()


TopicFactory = Callable[..., str]


@contextmanager
def topic_factory(kafka_bootstrap: str) -> Iterator[TopicFactory]:
    """Create topics unique to this test run; they are deleted afterwards."""
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap, "logger": LIBRDKAFKA_LOGGER})
    created: list[str] = []

    def create(prefix: str = "t", partitions: int = 3) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1)]
        )
        futures[name].result(timeout=30)
        created.append(name)
        return name

    yield create
    if created:
        for future in admin.delete_topics(created).values():
            future.result(timeout=30)


@pytest.fixture
def make_topic(kafka_bootstrap: str) -> Iterator[TopicFactory]:
    with topic_factory(kafka_bootstrap) as create:
        yield create


def renewable_producer(settings: Settings) -> RenewableProducer:
    """A decide loop's transactional producer, under a transactional.id of its own."""
    transactional_id = f"t-{uuid.uuid4().hex}"
    return RenewableProducer(lambda: transactional_producer(settings, transactional_id))


def drain(consumer: Consumer, expected: int, timeout_s: float = 60.0) -> list[Message]:
    """Poll until ``expected`` messages arrived or the time is up; returns them in order."""
    got: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < expected and time.monotonic() < deadline:
        for msg in consumer.consume(num_messages=min(500, expected - len(got)), timeout=0.2):
            error = msg.error()
            if error is None:
                got.append(msg)
            elif error.code() != KafkaError._PARTITION_EOF:
                raise AssertionError(f"consumer error: {error}")
    return got


def promoted_registry(root: Path) -> Registry:
    """A small S-learner bundle of the simulated world, exported and promoted as "v1"."""
    trained = train_models(
        randomized_experiment(build_world(WorldConfig(n_customers=6_000, seed=1))),
        default_catalog().names,
        "s",
        seed=1,
        n_estimators=30,
    )
    registry = Registry(root / "registry")
    export_run(save_run(trained, root / "run", ""), registry, "v1")
    registry.promote("v1")
    return registry


@pytest.fixture(scope="session")
def hillstrom_import(tmp_path_factory: pytest.TempPathFactory) -> tuple[Project, Path]:
    """Hillstrom's e-mail experiment imported once per session (examples/hillstrom/nba.yaml)."""
    project = load_project(Path(__file__).resolve().parents[1] / "examples/hillstrom/nba.yaml")
    out = tmp_path_factory.mktemp("hillstrom")
    import_project(project, out)
    return project, out
