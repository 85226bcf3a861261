"""`nba`: the one command line for every operator task; this module is its table of contents.

User mistakes (bad settings, bad parameters, infrastructure that cannot start or be reached) end
in one line on stderr and exit code 2; never a traceback. Heavy modules are imported inside each
command, after its arguments are checked, so that `--help` and a typo are answered at once.
"""

from __future__ import annotations

import logging
import sys

import typer

from nba.cli import api, data, engine, feedback, infra, models
from policies.errors import NbaError

__all__ = ["app", "main"]

app = typer.Typer(
    help="Next-Best-Action engine: simulate, decide, run the streaming workers, operate them.",
    epilog="New here? `make demo` (or `nba demo`) runs everything end to end; see README.md.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain help: rich mode prints `<bool>` after every flag and keeps docstring line breaks.
    rich_markup_mode=None,
)

app.command("demo")(engine.demo)
app.command("worker")(engine.worker)
app.command("score")(engine.score)
app.add_typer(engine.dlq_app, name="dlq")
app.add_typer(engine.ledger_app, name="ledger")
app.add_typer(api.api_app, name="api")

app.add_typer(infra.app, name="infra")
app.add_typer(data.simulate_app, name="simulate")
app.add_typer(data.data_app, name="data")
app.add_typer(data.features_app, name="features")
app.add_typer(data.schemas_app, name="schemas")

app.command("train")(models.train)
app.command("export")(models.export)
app.command("evaluate")(models.evaluate)
app.command("response")(models.response)
app.add_typer(models.models_app, name="models")

app.add_typer(feedback.experiment_app, name="experiment")
app.command("ope")(feedback.ope)
app.command("retrain")(feedback.retrain)
app.command("report")(feedback.report)
app.command("campaign")(feedback.campaign)
app.command("attribution")(feedback.attribution)


def _route_logs() -> None:
    """Warnings and errors to stderr; librdkafka's lines (``nba.librdkafka``) from ERROR up: its
    warnings are retries that the clients resolve by themselves (e.g. a producer's id fetched
    again while a fresh broker loads its coordinator)."""
    logging.basicConfig(level=logging.WARNING, format="nba: %(name)s: %(levelname)s %(message)s")
    logging.getLogger("nba.librdkafka").setLevel(logging.ERROR)


def main() -> None:
    _route_logs()
    try:
        app()
    except NbaError as exc:
        typer.echo(f"nba: error: {exc}", err=True)
        sys.exit(2)
