"""The local Redis Cluster: three masters of Debian's redis-server on loopback, no replicas.

What `nba infra up` starts instead of the single Redis when ``NBA_REDIS_CLUSTER=true`` (or
``--redis-cluster``): a cluster of three nodes to test what a production cluster does to the
engine (hash slots, redirections, scripts confined to one slot), not a highly available one.
Node i listens on ``NBA_REDIS_CLUSTER_PORT + i`` and gossips on that port + 3, so the cluster
takes six consecutive ports. The nodes keep their slot map in ``nodes.conf`` in their data
dirs: a cluster stopped and started again re-forms by itself; only a new one is created, with
`redis-cli --cluster create` (Redis's own tool for it).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import redis

from nba.local_servers.process import ManagedProcess, wait_until
from nba.local_servers.servers import redis_process
from policies.errors import InfraError

__all__ = ["NODES", "cluster_ok", "form_cluster", "node_names", "node_process", "node_ports"]

NODES = 3
_SLOTS = 16_384


def node_names() -> tuple[str, ...]:
    return tuple(f"redis-cluster-{i}" for i in range(NODES))


def node_ports(first_port: int) -> tuple[int, ...]:
    return tuple(first_port + i for i in range(NODES))


def node_process(name: str, *, data_dir: Path, run_dir: Path, first_port: int) -> ManagedProcess:
    index = node_names().index(name)
    port = first_port + index
    return redis_process(
        data_dir=data_dir, run_dir=run_dir, port=port, name=name, cluster_bus_port=port + NODES
    )


def _cluster_info(port: int) -> dict[str, str]:
    client = redis.Redis(
        host="127.0.0.1", port=port, socket_connect_timeout=1.0, socket_timeout=1.0
    )
    try:
        info: dict[str, str] = client.cluster("info")  # type: ignore[assignment]  # sync client
        return info
    except redis.RedisError:
        return {}
    finally:
        client.close()


def cluster_ok(first_port: int) -> bool:
    """Every node says the cluster is ok (all slots served)."""
    return all(_cluster_info(p).get("cluster_state") == "ok" for p in node_ports(first_port))


def form_cluster(first_port: int, timeout_s: float) -> None:
    """Create the cluster unless its nodes already hold every slot, then wait until it is ok."""
    ports = node_ports(first_port)
    assigned = int(_cluster_info(ports[0]).get("cluster_slots_assigned", 0))
    if assigned < _SLOTS:
        _create(ports)
    if not wait_until(lambda: cluster_ok(first_port), timeout_s, interval_s=0.2):
        states = {p: _cluster_info(p).get("cluster_state", "no answer") for p in ports}
        raise InfraError(
            f"the local Redis Cluster did not become ok within {timeout_s:.0f}s: {states}"
        )


def _create(ports: tuple[int, ...]) -> None:
    cli = shutil.which("redis-cli")
    if cli is None:
        raise InfraError(
            "redis-cli is not installed; run `make bootstrap` or `apt-get install redis-tools`"
        )
    nodes = [f"127.0.0.1:{p}" for p in ports]
    done = subprocess.run(  # noqa: S603  # a fixed tool with loopback addresses
        [cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        said = (done.stdout + done.stderr).strip().splitlines()[-1:]
        raise InfraError(f"redis-cli --cluster create failed: {' '.join(said)}")
