"""`nba simulate ...`, `nba features ...`, `nba schemas ...`: the data the engine reads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from nba.cli.common import ImportOption, ProjectOption, check_positive
from policies.errors import ConfigError
from stream_app.settings import load_settings

__all__ = ["data_app", "features_app", "schemas_app", "simulate_app"]

simulate_app = typer.Typer(
    help="A synthetic world with known counterfactuals (demo data).",
    no_args_is_help=True,
)
features_app = typer.Typer(
    help="The Feast feature repository: build, apply, load, read.",
    no_args_is_help=True,
)
data_app = typer.Typer(
    help="Validate and import a team's own data (docs/data-contract.md).",
    no_args_is_help=True,
)
schemas_app = typer.Typer(
    help="JSON Schemas of the topic messages (schemas/).", no_args_is_help=True
)


@simulate_app.command("world")
def simulate_world(
    out: Annotated[Path, typer.Option(help="Folder to write the data sets into.")] = Path(
        "data/world"
    ),
    customers: Annotated[int, typer.Option(help="Number of customer accounts.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed, the same world.")] = 7,
    churn_rate: Annotated[
        float, typer.Option(help="Share of accounts that churn without contact.")
    ] = 0.18,
    events_days: Annotated[
        float, typer.Option(help="Also write this many days of engagement events.")
    ] = 0.0,
    observation_noise: Annotated[
        float,
        typer.Option(
            help="Blur the traits behind the observed features by this standard deviation "
            "(the true effects stay): a world where the features say less."
        ),
    ] = 0.0,
    legacy_confounding: Annotated[
        float,
        typer.Option(
            help="Weight of the unobserved churn risk in the legacy rule that wrote "
            "history.parquet: a log confounded by what no feature shows."
        ),
    ] = 0.0,
) -> None:
    """Write a simulated world's data sets as parquet / JSON lines.

    Customers, ground truth, a randomized experiment, a biased legacy log, transactions and
    (with --events-days) engagement events.
    """
    from nba.commands.simulate import write_world
    from simulator.config import validated

    config = validated(
        n_customers=customers,
        seed=seed,
        baseline_churn_rate=churn_rate,
        observation_noise=observation_noise,
        legacy_confounding=legacy_confounding,
    )
    for name, rows in write_world(config, out, events_days).items():
        typer.echo(f"{out / name}: {rows:,} rows")


@simulate_app.command("journeys")
def simulate_journeys_command(
    out: Annotated[Path, typer.Option(help="Folder to write the journeys into.")] = Path(
        "data/journeys"
    ),
    customers: Annotated[int, typer.Option(help="Number of customers.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Write customer journeys whose causes are known.

    touches.csv, conversions.csv, and truth.json: each channel's share of the conversions its
    touches caused (retargeting reaches customers about to convert anyway).
    """
    from nba.cli.common import check_positive
    from nba.commands.attribution import write_journeys

    check_positive(customers=customers)
    for name, rows in write_journeys(out, customers, seed).items():
        typer.echo(f"{out / name}: {rows:,} rows")


@simulate_app.command("replay")
def simulate_replay(
    rate: Annotated[float, typer.Option(help="Target events per second.")] = 1_000.0,
    seconds: Annotated[
        float, typer.Option(help="How long to replay (rate x seconds events).")
    ] = 10.0,
    customers: Annotated[int, typer.Option(help="Number of customer accounts.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed of the world.")] = 7,
    topic: Annotated[str | None, typer.Option(help="Topic (default NBA_TOPIC_EVENTS).")] = None,
) -> None:
    """Send the world's engagement events into Kafka at a rate.

    Keyed by customer, with the partitioner the Faust workers use.
    """
    check_positive(rate=rate, seconds=seconds, customers=customers)
    from nba.replay import replay_events
    from simulator.config import validated
    from simulator.events import days_holding, generate_events
    from simulator.world import build_world
    from stream_app import kafka_clients

    settings = load_settings()
    world = build_world(validated(n_customers=customers, seed=seed))
    wanted = int(rate * seconds)
    events = generate_events(world, days=days_holding(world, wanted))
    producer = kafka_clients.producer(settings)
    stats = replay_events(events, producer, topic or settings.topic_events, rate, limit=wanted)
    typer.echo(f"sent {stats.sent:,} events in {stats.seconds:.1f}s ({stats.rate:,.0f}/s)")


@schemas_app.command("write")
def schemas_write() -> None:
    """Regenerate schemas/*.schema.json from the message models."""
    from stream_app.schemas import write_schemas

    for path in write_schemas():
        typer.echo(f"wrote {path}")


@schemas_app.command("check")
def schemas_check() -> None:
    """Fail when schemas/ differs from the message models."""
    from stream_app.schemas import check_schemas

    check_schemas()
    typer.echo("schemas are up to date")


def _feature_store(project: Path | None = None, data: Path | None = None) -> Any:
    """The store over the simulated world's views, or over a project's (generated from the
    project file, for its import) when --project or NBA_PROJECT names one."""
    from stream_app.worker import feature_store, project_feature_store

    settings = load_settings()
    if project or settings.project:
        from nba.commands.data import project_from

        return project_feature_store(settings, project_from(project, settings), data)
    return feature_store(settings)


@features_app.command("build")
def features_build(
    data: Annotated[
        Path,
        typer.Option(help="Folder written by `nba simulate world`, or a project's import."),
    ] = Path("data/world"),
    project: Annotated[
        Path | None,
        typer.Option(help="A project file (or NBA_PROJECT): build from its import at --data."),
    ] = None,
) -> None:
    """Run the batch feature jobs; write every view's parquet.

    The CLV, RFM, persona and activity-window jobs, into NBA_FEATURE_DATA. With a project:
    its declared views (profile, event windows, CLV, personas) from the import.
    """
    import json

    settings = load_settings()
    if project or settings.project:
        from features.project_repo import build_project_sources
        from nba.commands.data import project_from

        built = build_project_sources(project_from(project, settings), data, settings.feature_data)
        for name, rows in built.items():
            typer.echo(f"{settings.feature_data / name}: {rows:,} rows")
        return

    from nba.commands.features import build_sources
    from simulator.config import WorldConfig
    from simulator.world import build_world

    try:
        config = WorldConfig.model_validate(json.loads((data / "world.json").read_text())["config"])
    except OSError:
        raise ConfigError(
            f"{data / 'world.json'} not found: write it with `nba simulate world --out {data}`"
        ) from None
    for name, rows in build_sources(build_world(config), settings.feature_data).items():
        typer.echo(f"{settings.feature_data / name}: {rows:,} rows")


@features_app.command("apply")
def features_apply(project: ProjectOption = None, data: ImportOption = None) -> None:
    """Register the entity, sources, views and nba_scoring."""
    store = _feature_store(project, data)
    store.apply()
    typer.echo(f"applied: customer, {', '.join(store.definitions.views)}, nba_scoring")


@features_app.command("materialize")
def features_materialize(
    days: Annotated[int, typer.Option(help="Load feature values of the last N days.")] = 400,
    project: ProjectOption = None,
    data: ImportOption = None,
) -> None:
    """Load the batch sources into the Redis online store.

    With a project: over its import's own time range (--days is not used).
    """
    from datetime import timedelta

    from simulator.world import AS_OF

    check_positive(days=days)
    settings = load_settings()
    if project or settings.project:
        from features.project_repo import materialize_window

        start, end = materialize_window(data or settings.imported_data)
    else:
        start, end = AS_OF - timedelta(days=days), AS_OF + timedelta(days=1)
    _feature_store(project, data).materialize(start, end)
    typer.echo(f"materialized {start:%Y-%m-%d} to {end:%Y-%m-%d} into the online store")


@features_app.command("read")
def features_read(
    customers: Annotated[str, typer.Option(help="Comma-separated customer ids.")],
) -> None:
    """Print some customers' nba_scoring features.

    Unknown customers show nulls.
    """
    frame = _feature_store().read([c.strip() for c in customers.split(",") if c.strip()])
    typer.echo(frame.T.to_string())


@features_app.command("push-test")
def features_push_test(
    customer: Annotated[str, typer.Option(help="A customer id to push to.")] = "C00000000",
) -> None:
    """Push one engagement row and read it back."""
    import pandas as pd

    from features.definitions import ENGAGEMENT_FIELDS, TIMESTAMP

    store = _feature_store()
    row = {"customer_id": [customer], TIMESTAMP: [pd.Timestamp.now(tz="UTC")]}
    row.update({name: [k + 1] for k, name in enumerate(ENGAGEMENT_FIELDS)})
    store.push_engagement(pd.DataFrame(row))
    back = store.read([customer]).iloc[0]
    same = all(int(back[name]) == k + 1 for k, name in enumerate(ENGAGEMENT_FIELDS))
    typer.echo(
        f"pushed {len(ENGAGEMENT_FIELDS)} engagement features for {customer}; read back: {same}"
    )
    if not same:
        raise typer.Exit(1)


@data_app.command("validate")
def data_validate(
    project: ProjectOption = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Where `nba data import` will write; default NBA_IMPORTED_DATA."),
    ] = None,
) -> None:
    """Check each declared file against the data contract.

    Imports nothing.
    Per file: rows read and rejected, then the first problems as file:line:column: reason.
    Exit code 2 when any row is rejected or a file cannot be read. When everything passes, the
    checked tables are staged under OUT/staged/, so that `nba data import` of the same files
    publishes them without checking them again.
    """
    from ingest.importer import stage_project
    from ingest.validate import validate_project
    from nba.commands.data import print_reports, project_from

    settings = load_settings()
    loaded = project_from(project, settings)
    reports, tables = validate_project(loaded)
    if not print_reports(reports):
        raise typer.Exit(2)
    stage_project(loaded, out or settings.imported_data, tables)


@data_app.command("import")
def data_import(
    project: ProjectOption = None,
    out: Annotated[
        Path | None, typer.Option(help="Target folder; default NBA_IMPORTED_DATA.")
    ] = None,
) -> None:
    """Validate, then import every table as parquet, all or nothing.

    The tables land in a new folder under OUT/imports/ and OUT/current is switched to it in one
    rename: a reader never sees a half-written import, and a failed one changes nothing.
    """
    from ingest.importer import import_project
    from nba.commands.data import print_reports, project_from

    settings = load_settings()
    reports, folder = import_project(project_from(project, settings), out or settings.imported_data)
    print_reports(reports)
    typer.echo(f"imported into {folder}")


@features_app.command("clv")
def features_clv(
    calibration_end: Annotated[
        str, typer.Option(help="Last day of the calibration period (YYYY-MM-DD).")
    ],
    data: ImportOption = None,
    unit_days: Annotated[float, typer.Option(help="Days per model time unit (7: weeks).")] = 7.0,
    months: Annotated[int, typer.Option(help="CLV horizon in months.")] = 12,
    out: Annotated[Path, typer.Option(help="Per-customer CLV (parquet).")] = Path(
        "data/clv.parquet"
    ),
    plot: Annotated[
        Path | None, typer.Option(help="Also draw the calibration / holdout check (PNG).")
    ] = None,
) -> None:
    """BG/NBD + Gamma-Gamma on an import's transactions.

    CLV per customer.
    Fitted on the purchases up to --calibration-end; the rest of the data checks the fit
    (predicted vs actual repeat purchases per calibration frequency).
    """
    from datetime import UTC, datetime

    from features.clv import fit_clv, plot_calibration
    from ingest.importer import imported_table
    from nba.commands.files import write_output

    check_positive(unit_days=unit_days, months=months)
    try:
        end = datetime.strptime(calibration_end, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise ConfigError(f"--calibration-end {calibration_end!r} is not YYYY-MM-DD") from None
    transactions = imported_table(data or load_settings().imported_data, "transactions")
    fit = fit_clv(transactions, end, unit_days=unit_days, months=months)
    summary = fit.summary()
    bg, gg = summary["bg_nbd"], summary["gamma_gamma"]
    typer.echo("BG/NBD: " + ", ".join(f"{k} {v:.4g}" for k, v in bg.items()))
    typer.echo("Gamma-Gamma: " + ", ".join(f"{k} {v:.4g}" for k, v in gg.items()))
    typer.echo(
        f"{summary['customers']:,} customers, {months}-month CLV: mean ${summary['clv_mean']:,.2f},"
        f" total ${summary['clv_total']:,.0f}"
    )
    typer.echo("repeat purchases after the calibration end, per calibration frequency:")
    for row in summary["calibration"]:
        typer.echo(
            f"  {row['frequency']}: {row['customers']:>6,} customers, predicted "
            f"{row['predicted']:.2f}, actual {row['actual']:.2f}"
        )
    write_output(out, lambda path: fit.customers.to_parquet(path, index=False))
    typer.echo(f"wrote {out}")
    if plot is not None:
        typer.echo(f"wrote {plot_calibration(fit, plot)}")


@features_app.command("personas")
def features_personas(
    project: ProjectOption = None,
    data: ImportOption = None,
    seed: Annotated[int, typer.Option(help="Random seed of PCA and K-Means.")] = 0,
    out: Annotated[Path, typer.Option(help="Where to write the report (JSON).")] = Path(
        "personas.json"
    ),
) -> None:
    """Persona segments of an import's customers.

    From the project's `personas` section.
    PCA + K-Means with k by silhouette (Calinski-Harabasz and Davies-Bouldin beside it), named
    profiles, Kruskal-Wallis and Holm-corrected Mann-Whitney tests on the compared columns.
    """
    from nba.cli.common import write_json
    from nba.commands.data import project_from
    from nba.commands.response import personas_of_import

    settings = load_settings()
    report = personas_of_import(
        project_from(project, settings), data or settings.imported_data, seed
    )
    write_json(out, report)
