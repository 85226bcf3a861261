"""`nba infra ...`: the local Kafka broker, Redis and Prometheus (no Docker needed)."""

from __future__ import annotations

import typer

from nba.cli.common import Only, services
from nba.local_servers import stack
from stream_app.settings import Settings, load_settings

__all__ = ["app"]

app = typer.Typer(
    help="The local Kafka, Redis and Prometheus (no Docker needed).",
    no_args_is_help=True,
)
_ALL = ",".join(stack.ALL_SERVICES)


def _print_states(settings: Settings, only: str) -> None:
    for state in stack.status(settings, services(only)):
        ports = ",".join(str(p) for p in state.ports) or "-"
        pid = state.pid if state.pid is not None else "-"
        typer.echo(f"{state.name:<11} pid={pid!s:<8} ports={ports:<12} {state.detail}")


@app.command("up")
def up(only: Only = _ALL) -> None:
    """Start the services that are not running and wait for each.

    Safe to run twice: a service already running is left as it is.
    """
    settings = load_settings()
    stack.up(settings, services(only))
    _print_states(settings, only)


@app.command("down")
def down(only: Only = _ALL) -> None:
    """Stop the services this project started (never others)."""
    stopped = stack.down(load_settings(), services(only))
    typer.echo(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@app.command("status")
def status(only: Only = _ALL) -> None:
    """PID, ports and health of each local service."""
    _print_states(load_settings(), only)


@app.command("fetch")
def fetch() -> None:
    """Download the Kafka broker's jars into the cache (once).

    From Maven Central into NBA_CACHE_DIR (default ~/.cache/nba).
    """
    settings = load_settings()
    jar_dir = stack.fetch(settings)
    typer.echo(f"kafka {settings.kafka_version} jars: {jar_dir}")
