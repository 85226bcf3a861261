"""`nba`: the one command line for every operator task.

User mistakes (bad settings, bad parameters, infrastructure that cannot start) end in one line
on stderr and exit code 2; never a traceback.
"""

from __future__ import annotations

import sys

import typer

from policies.errors import NbaError
from stream_app.infra import stack
from stream_app.settings import Settings, load_settings

__all__ = ["app", "main"]

app = typer.Typer(
    help="Next-Best-Action engine: simulate, decide, run the streaming workers, operate them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
infra_app = typer.Typer(
    help="The local Kafka broker, Redis and Prometheus the engine runs on (no Docker needed).",
    no_args_is_help=True,
)
app.add_typer(infra_app, name="infra")

_SERVICES_HELP = "Comma-separated subset of: kafka,redis,prometheus."


def _services(only: str) -> list[str]:
    return [name.strip() for name in only.split(",") if name.strip()]


def _print_states(settings: Settings, only: str) -> None:
    for state in stack.status(settings, _services(only)):
        ports = ",".join(str(p) for p in state.ports) or "-"
        pid = state.pid if state.pid is not None else "-"
        typer.echo(f"{state.name:<11} pid={pid!s:<8} ports={ports:<12} {state.detail}")


@infra_app.command("up")
def infra_up(only: str = typer.Option(",".join(stack.ALL_SERVICES), help=_SERVICES_HELP)) -> None:
    """Start the services that are not running yet and wait until each answers."""
    settings = load_settings()
    stack.up(settings, _services(only))
    _print_states(settings, only)


@infra_app.command("down")
def infra_down(only: str = typer.Option(",".join(stack.ALL_SERVICES), help=_SERVICES_HELP)) -> None:
    """Stop the services this project started (never any other process)."""
    stopped = stack.down(load_settings(), _services(only))
    typer.echo(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@infra_app.command("status")
def infra_status(
    only: str = typer.Option(",".join(stack.ALL_SERVICES), help=_SERVICES_HELP),
) -> None:
    """PID, ports and health of each service."""
    _print_states(load_settings(), only)


@infra_app.command("fetch")
def infra_fetch() -> None:
    """Download the Kafka broker's jars from Maven Central into the cache (once)."""
    settings = load_settings()
    jar_dir = stack.fetch(settings)
    typer.echo(f"kafka {settings.kafka_version} jars: {jar_dir}")


def main() -> None:
    try:
        app()
    except NbaError as exc:
        typer.echo(f"nba: error: {exc}", err=True)
        sys.exit(2)
