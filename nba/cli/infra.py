"""`nba infra ...`: the local Kafka broker, Redis (or a Redis Cluster) and Prometheus (no Docker
needed)."""

from __future__ import annotations

from typing import Annotated

import typer

from nba.cli.common import Only, services
from nba.local_servers import stack
from stream_app.settings import Settings, load_settings

__all__ = ["app"]

app = typer.Typer(
    help="Local Kafka, Redis (or a Redis Cluster), Prometheus.",
    no_args_is_help=True,
)
_ALL = ",".join(stack.ALL_SERVICES)


RedisCluster = Annotated[
    bool,
    typer.Option(
        "--redis-cluster",
        help="Redis as a local 3-master Redis Cluster (what NBA_REDIS_CLUSTER=true does; "
        "set it for the workers too).",
    ),
]


def _settings(redis_cluster: bool) -> Settings:
    return load_settings(redis_cluster=True) if redis_cluster else load_settings()


def _print_states(settings: Settings, only: str) -> None:
    for state in stack.status(settings, services(only)):
        ports = ",".join(str(p) for p in state.ports) or "-"
        pid = state.pid if state.pid is not None else "-"
        typer.echo(f"{state.name:<15} pid={pid!s:<8} ports={ports:<12} {state.detail}")


@app.command("up")
def up(only: Only = _ALL, redis_cluster: RedisCluster = False) -> None:
    """Start the services that are not running and wait for each.

    Safe to run twice: a service already running is left as it is.
    """
    settings = _settings(redis_cluster)
    stack.up(settings, services(only))
    _print_states(settings, only)
    if redis_cluster and not load_settings().redis_cluster:
        typer.echo("workers and the API use it with NBA_REDIS_CLUSTER=true")


@app.command("down")
def down(only: Only = _ALL, redis_cluster: RedisCluster = False) -> None:
    """Stop the services this project started (never others)."""
    stopped = stack.down(_settings(redis_cluster), services(only))
    typer.echo(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@app.command("status")
def status(only: Only = _ALL, redis_cluster: RedisCluster = False) -> None:
    """PID, ports and health of each local service."""
    _print_states(_settings(redis_cluster), only)


@app.command("fetch")
def fetch() -> None:
    """Download the Kafka broker's jars into the cache (once).

    From Maven Central into NBA_CACHE_DIR (default ~/.cache/nba).
    """
    settings = load_settings()
    jar_dir = stack.fetch(settings)
    typer.echo(f"kafka {settings.kafka_version} jars: {jar_dir}")
