"""Redis (Debian's redis-server) and Prometheus (Debian's prometheus) as project-owned processes."""

from __future__ import annotations

import shutil
import urllib.request
from pathlib import Path

import redis
import yaml

from nba.local_servers.process import ManagedProcess
from policies.errors import InfraError

__all__ = ["prometheus_process", "prometheus_ready", "redis_answers", "redis_process"]

_ALERTS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"


def _require_binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise InfraError(
            f"{name} is not installed; run `make bootstrap` as root or `apt-get install {package}`"
        )
    return path


def _ensure_dir(path: Path, what: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise InfraError(
            f"{what}: data dir {path} is not writable ({exc.strerror}); "
            "set NBA_STATE_DIR to a writable folder"
        ) from None


def redis_process(
    *,
    data_dir: Path,
    run_dir: Path,
    port: int,
    name: str = "redis",
    cluster_bus_port: int | None = None,
) -> ManagedProcess:
    """A single Redis, or with ``cluster_bus_port`` a node of a Redis Cluster."""
    binary = _require_binary("redis-server", "redis-server")
    _ensure_dir(data_dir, name)
    cluster = (
        ()
        if cluster_bus_port is None
        else (
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",  # in --dir: the node's identity and slot map, kept across restarts
            "--cluster-port",
            str(cluster_bus_port),
        )
    )
    return ManagedProcess(
        name=name,
        argv=(
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data_dir),
            # Append-only file: the budget ledger must survive a restart of Redis.
            "--appendonly",
            "yes",
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            *cluster,
        ),
        ports=(port,) if cluster_bus_port is None else (port, cluster_bus_port),
        run_dir=run_dir,
    )


def redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def prometheus_config(*, metrics_port: int, rule_files: list[str], interval_s: float = 5.0) -> str:
    """A scrape config for the engine's workers on this host."""
    interval = f"{int(interval_s * 1000)}ms"
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": rule_files,
        "scrape_configs": [
            {
                "job_name": "nba-engine",
                "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}],
            },
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


def prometheus_process(
    *, data_dir: Path, run_dir: Path, port: int, metrics_port: int, interval_s: float = 5.0
) -> ManagedProcess:
    binary = _require_binary("prometheus", "prometheus")
    _ensure_dir(data_dir, "prometheus")
    config_file = data_dir / "prometheus.yml"
    config_file.write_text(
        prometheus_config(
            metrics_port=metrics_port, rule_files=[str(_ALERTS)], interval_s=interval_s
        )
    )
    return ManagedProcess(
        name="prometheus",
        argv=(
            binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={data_dir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
        ),
        ports=(port,),
        run_dir=run_dir,
    )


def prometheus_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1.0) as resp:  # noqa: S310  # fixed http URL on loopback
            return int(resp.status) == 200
    except OSError:
        return False
