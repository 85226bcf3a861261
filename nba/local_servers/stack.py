"""`nba infra up | down | status | fetch`: the local Kafka broker, Redis and Prometheus together.

Safe to run twice: a service whose PID file names a live process of ours is left as it is.
`up` is all or nothing: when one service cannot start, the ones this call started are stopped
again and an InfraError says what is wrong and how to fix it.

With ``NBA_REDIS_CLUSTER=true`` the service "redis" is the local Redis Cluster: its three nodes
(`redis-cluster-0..2`, each a process with a PID file of its own), formed into one cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from nba.local_servers import redis_cluster
from nba.local_servers.kafka import KafkaBroker, broker_answers, fetch_jars
from nba.local_servers.process import (
    ManagedProcess,
    PidFile,
    ProcessState,
    require_free_ports,
    wait_until,
)
from nba.local_servers.servers import (
    prometheus_process,
    prometheus_ready,
    redis_answers,
    redis_process,
)
from policies.errors import InfraError
from stream_app.settings import Settings

__all__ = ["ALL_SERVICES", "down", "fetch", "status", "up"]

ALL_SERVICES = ("kafka", "redis", "prometheus")

_HEALTH: dict[str, Callable[[int], bool]] = {
    "kafka": lambda port: broker_answers(f"127.0.0.1:{port}"),
    "redis": lambda port: redis_answers(f"redis://127.0.0.1:{port}/0"),
    "prometheus": prometheus_ready,
}
_PORT_ENV = {
    "kafka": ("NBA_KAFKA_PORT", "NBA_KAFKA_CONTROLLER_PORT"),
    "redis": ("NBA_REDIS_PORT",),
    "prometheus": ("NBA_PROMETHEUS_PORT",),
}
for _node in redis_cluster.node_names():
    _HEALTH[_node] = _HEALTH["redis"]
    _PORT_ENV[_node] = ("NBA_REDIS_CLUSTER_PORT", "NBA_REDIS_CLUSTER_PORT")


@dataclass(frozen=True)
class _Startable:
    process: ManagedProcess
    prepare: Callable[[], None]


def _run_dir(settings: Settings) -> Path:
    return settings.state_dir / "run"


def fetch(settings: Settings) -> Path:
    """Download the Kafka jars into the cache unless they are there already."""
    return fetch_jars(settings.cache_dir, settings.kafka_version)


def _startable(name: str, settings: Settings) -> _Startable:
    data = settings.state_dir / "data" / name
    run_dir = _run_dir(settings)
    if name == "kafka":
        broker = KafkaBroker(
            jar_dir=fetch(settings),
            data_dir=data,
            run_dir=run_dir,
            port=settings.kafka_port,
            controller_port=settings.kafka_controller_port,
            heap=settings.kafka_heap,
        )
        return _Startable(broker.process, broker.prepare)
    if name == "redis":
        return _Startable(
            redis_process(data_dir=data, run_dir=run_dir, port=settings.redis_port), _noop
        )
    if name in redis_cluster.node_names():
        node = redis_cluster.node_process(
            name, data_dir=data, run_dir=run_dir, first_port=settings.redis_cluster_port
        )
        return _Startable(node, _noop)
    return _Startable(
        prometheus_process(
            data_dir=data,
            run_dir=run_dir,
            port=settings.prometheus_port,
            metrics_port=settings.metrics_port,
            interval_s=settings.prometheus_scrape_interval_s,
        ),
        _noop,
    )


def _noop() -> None:
    return None


def _check_names(names: Iterable[str], settings: Settings) -> tuple[str, ...]:
    """The processes behind the named services: "redis" is the cluster's nodes on a cluster."""
    chosen = tuple(names)
    unknown = sorted(set(chosen) - set(ALL_SERVICES))
    if unknown:
        raise InfraError(f"unknown service {unknown[0]!r}; choose from {', '.join(ALL_SERVICES)}")
    if not settings.redis_cluster:
        return chosen
    expanded: list[str] = []
    for name in chosen:
        expanded += redis_cluster.node_names() if name == "redis" else (name,)
    return tuple(expanded)


def up(settings: Settings, names: Iterable[str] = ALL_SERVICES) -> list[ProcessState]:
    """Start every named service that is not running yet and wait until each is healthy."""
    started: list[PidFile] = []
    processes = _check_names(names, settings)
    try:
        for name in processes:
            if PidFile(name, _run_dir(settings)).live_pid() is not None:
                continue
            started.append(_start_one(name, settings))
        if set(redis_cluster.node_names()) & set(processes):
            redis_cluster.form_cluster(settings.redis_cluster_port, settings.start_timeout_s)
    except BaseException:
        for pid_file in reversed(started):
            pid_file.stop()
        raise
    return status(settings, names)


def _start_one(name: str, settings: Settings) -> PidFile:
    service = _startable(name, settings)
    require_free_ports(name, service.process.ports, _PORT_ENV[name])
    service.prepare()
    service.process.start()
    pid_file = service.process.pid_file
    try:
        _wait_healthy(name, service.process, settings.start_timeout_s)
    except BaseException:
        pid_file.stop()
        raise
    return pid_file


def _wait_healthy(name: str, process: ManagedProcess, timeout_s: float) -> None:
    pid_file, port = process.pid_file, process.ports[0]

    def ready_or_dead() -> bool:
        return pid_file.live_pid() is None or _HEALTH[name](port)

    wait_until(ready_or_dead, timeout_s, interval_s=0.3)
    if pid_file.live_pid() is None:
        raise InfraError(f"{name} exited at start; its log says: {process.log_tail()}")
    if not _HEALTH[name](port):
        raise InfraError(
            f"{name} did not become healthy within {timeout_s:.0f}s "
            f"(raise NBA_START_TIMEOUT_S, or read {process.log_file})"
        )


def down(settings: Settings, names: Iterable[str] = ALL_SERVICES) -> list[str]:
    """Stop the named services that we started; returns the names that were stopped."""
    stopped = []
    for name in reversed(_check_names(names, settings)):
        if PidFile(name, _run_dir(settings)).stop():
            stopped.append(name)
    return stopped


def status(settings: Settings, names: Iterable[str] = ALL_SERVICES) -> list[ProcessState]:
    states = []
    for name in _check_names(names, settings):
        pid_file = PidFile(name, _run_dir(settings))
        pid = pid_file.live_pid()
        ports = pid_file.ports() if pid is not None else ()
        healthy = pid is not None and _HEALTH[name](ports[0])
        detail = "healthy" if healthy else ("running, not answering" if pid else "stopped")
        if healthy and name in redis_cluster.node_names():
            healthy = redis_cluster.cluster_ok(settings.redis_cluster_port)
            detail = "healthy, cluster ok" if healthy else "answering, cluster not ok"
        states.append(ProcessState(name, pid is not None, pid, ports, healthy, detail))
    return states
