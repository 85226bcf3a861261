"""`nba demo`, `nba worker`, `nba score`, `nba dlq ...`: running the engine and operating it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nba.cli.common import ValuesOption, check_not_negative, check_positive, read_values
from policies.errors import ConfigError
from stream_app.settings import load_settings

__all__ = ["demo", "dlq_app", "ledger_app", "score", "worker"]

ledger_app = typer.Typer(
    help="The budget ledger: its spend; a rebuild from nba-actions.",
    no_args_is_help=True,
)
dlq_app = typer.Typer(
    help="Dead-letter queue: why records landed there; replay them.",
    no_args_is_help=True,
)


def demo(
    customers: Annotated[int, typer.Option(help="Customers in the simulated world.")] = 20_000,
    rate: Annotated[float, typer.Option(help="Events per second replayed into Kafka.")] = 2_000.0,
    seconds: Annotated[float, typer.Option(help="How long to replay events.")] = 30.0,
    budget: Annotated[
        float, typer.Option(help="Budget of the demo period, in dollars.")
    ] = 100_000.0,
    seed: Annotated[int, typer.Option(help="Random seed of the world.")] = 7,
) -> None:
    """Run the whole loop end to end on the local stack.

    Starts its own Kafka and Redis, trains and serves the models, replays events through a
    worker, closes the loop from the topics and prints what happened.
    """
    # Checked before the heavy imports below, so a typo is answered at once.
    check_positive(customers=customers, rate=rate, seconds=seconds)
    check_not_negative(budget=budget)
    from rich.console import Console

    from nba.demo import DemoOptions, run_demo

    options = DemoOptions(customers=customers, rate=rate, seconds=seconds, budget=budget, seed=seed)
    run_demo(load_settings(), options, Console())


def worker() -> None:
    """Run the decision worker until SIGTERM or Ctrl-C.

    A Faust app: NBA_TOPIC_EVENTS in, decisions out on NBA_TOPIC_ACTIONS. Start more with the
    same NBA_CONSUMER_GROUP to share the partitions.
    """
    from stream_app.worker import run_worker

    settings = load_settings()
    consumed = run_worker(
        settings,
        on_ready=lambda: typer.echo(
            f"worker: consuming {settings.topic_events} as {settings.consumer_group}; Ctrl-C stops",
        ),
    )
    typer.echo(f"worker: stopped after {consumed:,} events; offsets committed")


def score(
    data: Annotated[
        Path | None,
        typer.Option(
            help="Folder with customers.parquet (the offline features), default data/world; "
            "with --project, an import (default NBA_IMPORTED_DATA)."
        ),
    ] = None,
    budget: Annotated[float, typer.Option(help="Budget of the period, in dollars.")] = 100_000.0,
    out: Annotated[Path, typer.Option(help="Where to write the decisions (parquet).")] = Path(
        "data/decisions.parquet"
    ),
    all_customers: Annotated[
        bool,
        typer.Option(
            "--all", help="Score every customer of the snapshot (the only mode; must be given)."
        ),
    ] = False,
    project: Annotated[
        Path | None,
        typer.Option(help="A project file: score its import's customers with its bundle."),
    ] = None,
    values: ValuesOption = None,
    engine: Annotated[
        str,
        typer.Option(
            help="local: this machine; spark: score on Apache Spark (needs the spark extra and "
            "Java 17), same decisions."
        ),
    ] = "local",
    spark_master: Annotated[
        str, typer.Option(help="With --engine spark: the master URL (local[N], spark://..., yarn).")
    ] = "local[*]",
    spark_partitions: Annotated[
        int, typer.Option(help="With --engine spark: how many tasks score the base.")
    ] = 8,
    publish: Annotated[
        bool,
        typer.Option(
            "--publish",
            help="Decide under the period's ledger and the stream's contact history, and "
            "publish the decisions on NBA_TOPIC_ACTIONS (needs Kafka and Redis).",
        ),
    ] = False,
    run_id: Annotated[
        str | None,
        typer.Option(help="With --publish: the run's id (default: period and snapshot checksum)."),
    ] = None,
) -> None:
    """Batch mode: score and decide for the whole base.

    The promoted bundle and the same policy as the stream, in one vectorized pass.
    """
    if not all_customers:
        raise ConfigError("batch scoring covers the whole base: pass --all")
    if engine not in ("local", "spark"):
        raise ConfigError(f"--engine must be local or spark, got {engine!r}")
    if engine == "spark" and project is not None:
        raise ConfigError("--engine spark scores the simulated world's bundle; not with --project")
    if publish and (engine == "spark" or project is not None):
        raise ConfigError("--publish runs on this machine with the simulated world's bundle")
    check_not_negative(budget=budget)
    check_positive(spark_partitions=spark_partitions)
    from model_export.manifest import Registry
    from nba.commands.score import SparkOptions, score_base, score_project_base

    settings = load_settings()
    registry = Registry(settings.model_registry)
    if project is None:
        spark = SparkOptions(spark_master, spark_partitions) if engine == "spark" else None
        run = score_base(
            data or Path("data/world"),
            registry,
            budget,
            out,
            spark,
            (run_id or "") if publish else None,
        )
    else:
        from ingest.project import load_project

        run = score_project_base(
            load_project(project),
            data or settings.imported_data,
            registry,
            budget,
            out,
            read_values(values),
        )
    acted = run.decisions[run.decisions["action"] != "do_nothing"]
    typer.echo(
        f"{len(run.decisions):,} customers scored and decided in {run.seconds:.1f}s "
        f"(model {run.model_version}): {len(acted):,} actions, spend "
        f"${acted['cost'].sum():,.2f} of ${budget:,.2f}; wrote {run.path}"
    )
    if run.publication is not None:
        done = run.publication
        typer.echo(
            f"run {done.run_id}: published {done.published:,} decisions on "
            f"{settings.topic_actions} ({done.actions:,} actions, ${done.spend:,.2f} reserved in "
            f"the ledger of {settings.budget_period}; {done.refused:,} refused by it; "
            f"{done.already_delivered:,} delivered by an earlier try)"
        )


@dlq_app.command("inspect")
def dlq_inspect(
    samples: Annotated[int, typer.Option(help="How many records to show.")] = 5,
) -> None:
    """Count the DLQ's records by reason and show a few.

    Nothing is consumed for good.
    """
    from nba.commands.dlq import inspect_dlq

    summary = inspect_dlq(load_settings(), samples)
    typer.echo(f"{summary.total:,} records; by reason: {dict(summary.by_reason.most_common())}")
    for record in summary.samples:
        typer.echo(
            f"  {record.error_code}: {record.error_message} "
            f"({record.source_topic}[{record.source_partition}]@{record.source_offset})"
        )


@dlq_app.command("replay")
def dlq_replay(
    reason: Annotated[str, typer.Option(help="Replay records with this error code.")],
) -> None:
    """Send one reason's originals back to the events topic, once."""
    from nba.commands.dlq import replay_dlq

    settings = load_settings()
    result = replay_dlq(settings, reason)
    typer.echo(f"replayed {result.sent:,} records with reason {reason} to {settings.topic_events}")
    if result.truncated:
        typer.echo(
            f"{result.truncated:,} record(s) of that reason kept only part of their original "
            "(too large for the DLQ): fix them at the source; see original_sha256 to find them"
        )


@ledger_app.command("status")
def ledger_status() -> None:
    """Spend, actions and epoch of the NBA_BUDGET_PERIOD ledger."""
    from stream_app.ledger import BudgetLedger
    from stream_app.redis_clients import redis_client

    settings = load_settings()
    ledger = BudgetLedger(redis_client(settings), settings.budget_period, settings.budget)
    epoch = ledger.stored_epoch()
    typer.echo(
        f"period {settings.budget_period}: spent ${ledger.spent():,.2f} of "
        f"${settings.budget:,.2f}; actions {dict(sorted(ledger.counts().items()))}; "
        + (f"epoch {epoch}" if epoch else "NO EPOCH: lost or never opened (nba ledger rebuild)")
    )


@ledger_app.command("rebuild")
def ledger_rebuild(
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Rebuild even when the ledger has an epoch (workers adopt it)."
        ),
    ] = False,
) -> None:
    """Rebuild the period's ledger from NBA_TOPIC_ACTIONS.

    Every action of NBA_BUDGET_PERIOD on the topic (read_committed) becomes a reservation again
    and its decision is stored again by action_id. Workers rebuild by themselves when they find
    the ledger lost; this is for an operator who restored or replaced Redis.
    """
    from stream_app.engine.state import DecisionState
    from stream_app.ledger import BudgetLedger
    from stream_app.ledger_restore import restore_ledger
    from stream_app.redis_clients import redis_client

    settings = load_settings()
    client = redis_client(settings)
    ledger = BudgetLedger(client, settings.budget_period, settings.budget)
    if ledger.stored_epoch() is not None and not force:
        raise ConfigError(
            f"the ledger of period {settings.budget_period} has an epoch (it is not lost): "
            "pass --force to rebuild it anyway"
        )
    ledger.forget_epoch()
    restored = restore_ledger(settings, ledger, DecisionState(client, settings.topic_events))
    typer.echo(
        f"ledger of period {settings.budget_period} rebuilt from {settings.topic_actions}: "
        f"{restored.actions:,} actions, spent ${restored.spent:,.2f} ({restored.seconds:.1f}s)"
    )
