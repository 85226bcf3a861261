"""`nba`: the one command line for every operator task.

User mistakes (bad settings, bad parameters, infrastructure that cannot start) end in one line
on stderr and exit code 2; never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from nba.local_servers import stack
from policies.errors import ConfigError, NbaError
from simulator.config import validated
from simulator.events import days_holding, generate_events
from simulator.world import build_world
from stream_app.settings import Settings, load_settings

__all__ = ["app", "main"]

app = typer.Typer(
    help="Next-Best-Action engine: simulate, decide, run the streaming workers, operate them.",
    epilog="New here? `make demo` (or `nba demo`) runs everything end to end; see README.md.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _group(name: str, help_text: str) -> typer.Typer:
    group = typer.Typer(help=help_text, no_args_is_help=True)
    app.add_typer(group, name=name)
    return group


infra_app = _group(
    "infra", "The local Kafka broker, Redis and Prometheus the engine runs on (no Docker)."
)
simulate_app = _group(
    "simulate", "A synthetic customer world with known counterfactuals (training, demo data)."
)
schemas_app = _group("schemas", "JSON Schemas of the topic messages (schemas/).")
features_app = _group(
    "features", "The Feast feature repository: batch jobs, apply, materialize, push, read."
)
dlq_app = _group(
    "dlq", "The dead-letter queue: what landed there and why; send it back once fixed."
)
experiment_app = _group(
    "experiment", "A/B experiments: plan their size, read out the holdout test from the topics."
)
models_app = _group("models", "The model registry: list versions, promote the one served.")

_ALL = ",".join(stack.ALL_SERVICES)
Only = Annotated[str, typer.Option(help="Comma-separated subset of: kafka,redis,prometheus.")]


def _services(only: str) -> list[str]:
    return [name.strip() for name in only.split(",") if name.strip()]


def _print_states(settings: Settings, only: str) -> None:
    for state in stack.status(settings, _services(only)):
        ports = ",".join(str(p) for p in state.ports) or "-"
        pid = state.pid if state.pid is not None else "-"
        typer.echo(f"{state.name:<11} pid={pid!s:<8} ports={ports:<12} {state.detail}")


@infra_app.command("up")
def infra_up(only: Only = _ALL) -> None:
    """Start the services that are not running yet and wait until each answers."""
    settings = load_settings()
    stack.up(settings, _services(only))
    _print_states(settings, only)


@infra_app.command("down")
def infra_down(only: Only = _ALL) -> None:
    """Stop the services this project started (never any other process)."""
    stopped = stack.down(load_settings(), _services(only))
    typer.echo(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@infra_app.command("status")
def infra_status(only: Only = _ALL) -> None:
    """PID, ports and health of each service."""
    _print_states(load_settings(), only)


@infra_app.command("fetch")
def infra_fetch() -> None:
    """Download the Kafka broker's jars from Maven Central into the cache (once)."""
    settings = load_settings()
    jar_dir = stack.fetch(settings)
    typer.echo(f"kafka {settings.kafka_version} jars: {jar_dir}")


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
) -> None:
    """Write customers, ground truth, a randomized experiment, a biased legacy log, transactions
    (and optionally engagement events) as parquet / JSON lines."""
    from nba.commands.simulate import write_world

    config = validated(n_customers=customers, seed=seed, baseline_churn_rate=churn_rate)
    for name, rows in write_world(config, out, events_days).items():
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
    """Send the world's engagement events into Kafka at a target rate, keyed by customer."""
    from nba.replay import replay_events
    from stream_app import kafka_clients

    settings = load_settings()
    world = build_world(validated(n_customers=customers, seed=seed))
    wanted = int(rate * seconds)
    events = generate_events(world, days=days_holding(world, wanted))
    producer = kafka_clients.producer(settings)
    stats = replay_events(events, producer, topic or settings.topic_events, rate, limit=wanted)
    typer.echo(f"sent {stats.sent:,} events in {stats.seconds:.1f}s ({stats.rate:,.0f}/s)")


@app.command("demo")
def demo(
    customers: Annotated[int, typer.Option(help="Customers in the simulated world.")] = 20_000,
    rate: Annotated[float, typer.Option(help="Events per second replayed into Kafka.")] = 2_000.0,
    seconds: Annotated[float, typer.Option(help="How long to replay events.")] = 30.0,
    budget: Annotated[
        float, typer.Option(help="Budget of the demo period, in dollars.")
    ] = 100_000.0,
    seed: Annotated[int, typer.Option(help="Random seed of the world.")] = 7,
) -> None:
    """Run the whole loop end to end on the local stack and print what happened."""
    from rich.console import Console

    from nba.demo import DemoOptions, run_demo

    if rate <= 0 or seconds <= 0 or budget < 0:
        raise ConfigError("--rate and --seconds must be > 0 and --budget >= 0")
    options = DemoOptions(customers=customers, rate=rate, seconds=seconds, budget=budget, seed=seed)
    run_demo(load_settings(), options, Console())


@schemas_app.command("write")
def schemas_write() -> None:
    """Regenerate schemas/*.schema.json from the message models."""
    from stream_app.schemas import write_schemas

    for path in write_schemas():
        typer.echo(f"wrote {path}")


@schemas_app.command("check")
def schemas_check() -> None:
    """Fail when schemas/ differs from what the message models generate."""
    from stream_app.schemas import check_schemas

    check_schemas()
    typer.echo("schemas are up to date")


def _feature_store() -> Any:
    from stream_app.feature_store import FeatureStoreAdapter

    settings = load_settings()
    return FeatureStoreAdapter(settings, settings.feature_repo, settings.feature_data)


@features_app.command("build")
def features_build(
    data: Annotated[Path, typer.Option(help="Folder written by `nba simulate world`.")] = Path(
        "data/world"
    ),
) -> None:
    """Run the CLV, RFM, persona and activity-window jobs; write every view's parquet source."""
    import json

    from nba.commands.features import build_sources
    from simulator.config import WorldConfig

    settings = load_settings()
    try:
        config = WorldConfig.model_validate(json.loads((data / "world.json").read_text())["config"])
    except OSError:
        raise ConfigError(
            f"{data / 'world.json'} not found: write it with `nba simulate world --out {data}`"
        ) from None
    for name, rows in build_sources(build_world(config), settings.feature_data).items():
        typer.echo(f"{settings.feature_data / name}: {rows:,} rows")


@features_app.command("apply")
def features_apply() -> None:
    """Register the entity, sources, feature views and the nba_scoring service."""
    _feature_store().apply()
    typer.echo("applied: customer, profile, engagement_stream, clv, rfm, persona, nba_scoring")


@features_app.command("materialize")
def features_materialize(
    days: Annotated[int, typer.Option(help="Load feature values of the last N days.")] = 400,
) -> None:
    """Load the batch sources into the Redis online store."""
    from datetime import timedelta

    from simulator.world import AS_OF

    _feature_store().materialize(AS_OF - timedelta(days=days), AS_OF + timedelta(days=1))
    typer.echo("materialized into the online store")


@features_app.command("read")
def features_read(
    customers: Annotated[str, typer.Option(help="Comma-separated customer ids.")],
) -> None:
    """Print the nba_scoring features of some customers (nulls for unknown ones)."""
    frame = _feature_store().read([c.strip() for c in customers.split(",") if c.strip()])
    typer.echo(frame.T.to_string())


@features_app.command("push-test")
def features_push_test(
    customer: Annotated[str, typer.Option(help="A customer id to push to.")] = "C00000000",
) -> None:
    """Push one engagement row through the push source and read it back."""
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


@dlq_app.command("inspect")
def dlq_inspect(
    samples: Annotated[int, typer.Option(help="How many records to show.")] = 5,
) -> None:
    """Count the DLQ's records by reason and show a few (nothing is consumed for good)."""
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
    """Send the originals of one reason's records back to NBA_TOPIC_EVENTS, once."""
    from nba.commands.dlq import replay_dlq

    settings = load_settings()
    sent = replay_dlq(settings, reason)
    typer.echo(f"replayed {sent:,} records with reason {reason} to {settings.topic_events}")


@experiment_app.command("plan")
def experiment_plan(
    baseline: Annotated[float, typer.Option(help="Baseline rate, e.g. the retention rate 0.82.")],
    mde: Annotated[float, typer.Option(help="Minimum detectable absolute change, e.g. 0.02.")],
    alpha: Annotated[float, typer.Option(help="Significance level (two-sided).")] = 0.05,
    power: Annotated[float, typer.Option(help="Power wanted, e.g. 0.8 or 0.9.")] = 0.8,
    base: Annotated[
        Path | None,
        typer.Option(
            help="customers.parquet to assign: treatment/holdout per risk x value x tenure."
        ),
    ] = None,
    holdout_share: Annotated[float, typer.Option(help="Share of each stratum held out.")] = 0.5,
    out: Annotated[Path, typer.Option(help="Where to write the assignment (parquet).")] = Path(
        "data/assignment.parquet"
    ),
    seed: Annotated[int, typer.Option(help="Random seed of the assignment.")] = 0,
) -> None:
    """Customers needed per arm (treatment and holdout) to detect the change; with --base, a
    stratified assignment of that base (churn risk from the promoted model)."""
    from feedback.experiments import sample_size_per_arm

    n = sample_size_per_arm(baseline, mde, alpha, power)
    typer.echo(
        f"{n:,} customers per arm (alpha {alpha}, power {power}, {baseline} -> {baseline + mde})"
    )
    if base is not None:
        from nba.commands.feedback import assign_base

        assignment = assign_base(load_settings(), base, holdout_share, seed, out)
        arms = assignment["arm"].value_counts()
        smallest = int(arms.min())
        typer.echo(
            f"wrote {out}: {arms.get('treatment', 0):,} treatment, {arms.get('holdout', 0):,} "
            f"holdout over {assignment['stratum'].nunique()} strata; "
            + ("enough for the test" if smallest >= n else f"UNDERPOWERED: {smallest:,} < {n:,}")
        )


@experiment_app.command("report")
def experiment_report(
    out: Annotated[
        Path | None, typer.Option(help="Also write the full report as JSON here.")
    ] = None,
    alpha: Annotated[float, typer.Option(help="Significance level of tests and CIs.")] = 0.05,
) -> None:
    """Treatment vs holdout from NBA_TOPIC_ACTIONS joined to NBA_TOPIC_OUTCOMES: retention per
    arm with CIs, lift, p-value, power, cost per save, ROI; per segment and per action;
    guardrails (complaints, opt-outs); what the join had to leave out."""
    from nba.commands.feedback import load_feedback, render_report

    _check_alpha(alpha)
    report = load_feedback(load_settings()).report(alpha)
    typer.echo(render_report(report))
    if out is not None:
        _write_json(out, report)


@app.command("ope")
def ope(
    data: Annotated[
        Path, typer.Option(help="Folder with customers.parquet: the logged customers' features.")
    ] = Path("data/world"),
    candidate: Annotated[
        list[str] | None,
        typer.Option(
            help="A registered model version to evaluate (repeatable; default: the champion)."
        ),
    ] = None,
    budget_factor: Annotated[
        float, typer.Option(help="The candidates' budget as a multiple of the logged spend.")
    ] = 1.0,
    alpha: Annotated[float, typer.Option(help="1 - confidence of the intervals.")] = 0.05,
) -> None:
    """Off-policy evaluation: what each candidate's policy would earn per decision (IPS, SNIPS,
    doubly robust, with CIs), from the logged decisions, their propensities and outcomes."""
    from model_export.manifest import Registry
    from nba.commands.feedback import (
        evaluate_candidates,
        load_feedback,
        logging_model,
        off_policy_log,
        read_snapshot,
        render_estimates,
    )
    from policies.catalog import default_catalog

    _check_alpha(alpha)
    if budget_factor <= 0:
        raise ConfigError("--budget-factor must be > 0")
    settings = load_settings()
    registry = Registry(settings.model_registry)
    catalog = default_catalog()
    snapshot = read_snapshot(data / "customers.parquet")
    served = logging_model(registry, catalog)
    versions = candidate or [served.version]
    log = off_policy_log(load_feedback(settings).joined, snapshot, served, catalog)
    found = evaluate_candidates(
        log, registry, catalog, {v: v for v in versions}, budget_factor, alpha
    )
    typer.echo(render_estimates(found))
    limited = int(log.unavailable.any(axis=1).sum())
    if limited:
        typer.echo(
            f"{limited:,} of {log.unavailable.shape[0]:,} decisions were made after an action's "
            "capacity had run out: the candidates are valued without that action there"
        )


@app.command("retrain")
def retrain(
    data: Annotated[
        Path, typer.Option(help="Folder with the newest experiment.parquet and customers.parquet.")
    ] = Path("data/world"),
    learner: Annotated[str, typer.Option(help="Uplift learner: s, t, x, dr or ct.")] = "s",
    seed: Annotated[int, typer.Option(help="Random seed of the split and the models.")] = 0,
    margin: Annotated[
        float, typer.Option(help="Dollars per decision the challenger must win by (DR).")
    ] = 0.0,
) -> None:
    """Train a challenger, evaluate it off-policy against the champion on the logged decisions,
    and promote it only if it wins by the margin with its CI above zero. Running workers pick
    up a promoted model within NBA_MODEL_RELOAD_S seconds, without a restart."""
    from rich.console import Console

    from nba.commands.feedback import retrain as run_retrain

    result = run_retrain(load_settings(), data, learner, seed, margin, Console(stderr=True))
    verdict = "PROMOTED" if result.promoted else "not promoted"
    typer.echo(
        f"challenger {result.challenger}: {verdict}. DR per decision "
        f"{result.challenger_value:,.2f} vs champion {result.champion} "
        f"{result.champion_value:,.2f}; difference "
        f"{result.difference:+,.2f} [{result.difference_ci[0]:+,.2f}, "
        f"{result.difference_ci[1]:+,.2f}]; {result.reason}"
    )


@app.command("report")
def report(
    out: Annotated[Path, typer.Option(help="Where to write the HTML page.")] = Path(
        "nba-report.html"
    ),
    data: Annotated[
        Path | None,
        typer.Option(help="Folder with customers.parquet: adds the Qini curve and drift."),
    ] = None,
) -> None:
    """The decision report, one self-contained HTML file: lift by arm with CIs, Qini curve,
    spend vs budget over time, decisions by segment, drift, guardrails."""
    from nba.commands.feedback import decision_report

    path = decision_report(load_settings(), data, out)
    typer.echo(f"wrote {path}; open it in a browser")


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ConfigError("--alpha must lie strictly between 0 and 1")


def _write_json(path: Path, payload: object) -> None:
    import json

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2, default=str))
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    typer.echo(f"wrote {path}")


@app.command("worker")
def worker() -> None:
    """Run the decision worker (a Faust app) until SIGTERM or Ctrl-C: events in, decisions out.
    Start more with the same NBA_CONSUMER_GROUP to share the partitions."""
    from stream_app.worker import run_worker

    settings = load_settings()
    consumed = run_worker(
        settings,
        on_ready=lambda: typer.echo(
            f"worker: consuming {settings.topic_events} as {settings.consumer_group}; Ctrl-C stops",
        ),
    )
    typer.echo(f"worker: stopped after {consumed:,} events; offsets committed")


@app.command("score")
def score(
    data: Annotated[
        Path, typer.Option(help="Folder with customers.parquet (the offline features).")
    ] = Path("data/world"),
    budget: Annotated[float, typer.Option(help="Budget of the period, in dollars.")] = 100_000.0,
    out: Annotated[Path, typer.Option(help="Where to write the decisions (parquet).")] = Path(
        "data/decisions.parquet"
    ),
    all_customers: Annotated[
        bool, typer.Option("--all", help="Score the whole base (required).")
    ] = False,
) -> None:
    """Batch mode: score and decide for the whole base with the promoted bundle and the policy."""
    import time

    import pandas as pd

    from model_export.manifest import Registry
    from nba.commands.score import decisions_frame, score_all, write_decisions
    from policies.catalog import default_catalog
    from policies.decide import PolicyConfig
    from stream_app.scorer import BundleScorer

    if not all_customers:
        raise ConfigError("batch scoring covers the whole base: pass --all")
    if budget < 0:
        raise ConfigError("--budget must be >= 0")
    settings = load_settings()
    scorer = BundleScorer(Registry(settings.model_registry), default_catalog(), threads=0)
    snapshot = pd.read_parquet(data / "customers.parquet")
    started = time.perf_counter()
    decisions = score_all(snapshot, scorer, PolicyConfig(), budget)
    elapsed = time.perf_counter() - started
    frame = decisions_frame(snapshot, decisions, scorer.version)
    path = write_decisions(frame, out)
    acted = frame[frame["action"] != "do_nothing"]
    typer.echo(
        f"{len(frame):,} customers scored and decided in {elapsed:.1f}s (model {scorer.version}): "
        f"{len(acted):,} actions, spend ${acted['cost'].sum():,.0f} of ${budget:,.0f}; wrote {path}"
    )


@app.command("train")
def train(
    data: Annotated[
        Path, typer.Option(help="Folder written by `nba simulate world` (experiment.parquet).")
    ] = Path("data/world"),
    learner: Annotated[str, typer.Option(help="Uplift learner: s, t, x, dr or ct.")] = "s",
    seed: Annotated[int, typer.Option(help="Random seed of the split and the models.")] = 0,
    out: Annotated[
        Path | None, typer.Option(help="Run folder (default models/runs/<time>).")
    ] = None,
) -> None:
    """Train the churn model and the uplift learners, evaluate them, write a run with its report."""
    from rich.console import Console

    from nba.commands.models import run_training

    folder = run_training(data, learner, seed, out, Console())
    typer.echo(
        f"run written: {folder} (open {folder / 'report.html'}); next: nba export --run {folder}"
    )


@app.command("export")
def export(
    run: Annotated[Path, typer.Option(help="A run folder written by `nba train`.")],
    version: Annotated[
        str | None, typer.Option(help="Version name (default: the run's name).")
    ] = None,
) -> None:
    """Build the ONNX bundle, check parity with the native models, register it with its manifest."""
    from model_export.manifest import Registry
    from nba.commands.models import run_export

    manifest = run_export(run, Registry(load_settings().model_registry), version)
    typer.echo(
        f"registered {manifest.version}: parity {manifest.parity.max_abs_diff:.1e} on "
        f"{manifest.parity.rows} rows; next: nba models promote {manifest.version}"
    )


@app.command("evaluate")
def evaluate(
    version: Annotated[str, typer.Option(help="A registered model version.")],
    data: Annotated[
        Path, typer.Option(help="Folder with experiment.parquet (and truth.parquet).")
    ] = Path("data/world"),
) -> None:
    """Score a data set with the registered ONNX bundle and print Qini, AUUC and uplift@k."""
    from model_export.manifest import Registry
    from nba.commands.models import dump, evaluate_version

    typer.echo(dump(evaluate_version(Registry(load_settings().model_registry), version, data)))


@models_app.command("list")
def models_list() -> None:
    """Registered versions; * marks the promoted one."""
    from model_export.manifest import Registry
    from nba.commands.models import describe

    registry = Registry(load_settings().model_registry)
    versions = registry.versions()
    if not versions:
        typer.echo(f"no models in {registry.root}; train and export one (nba train, nba export)")
    for manifest in versions:
        typer.echo(describe(manifest, registry.champion()))


@models_app.command("promote")
def models_promote(version: Annotated[str, typer.Argument(help="The version to serve.")]) -> None:
    """Mark a version as the one the engine serves (after checking its checksum and parity)."""
    from model_export.manifest import Registry

    manifest = Registry(load_settings().model_registry).promote(version)
    typer.echo(f"promoted {manifest.version}")


def main() -> None:
    try:
        app()
    except NbaError as exc:
        typer.echo(f"nba: error: {exc}", err=True)
        sys.exit(2)
