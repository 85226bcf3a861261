"""`nba worker`: the long-running decision process, on the local stack or a real cluster.

It wires the decision engine (stream_app.engine) to the settings, the promoted ONNX bundle
(hot-reloaded), the Feast online store, the Redis ledger, trigger state, contact history and
streaming aggregates, drives it with the transactional decide loop (stream_app.decision_loop)
and runs both in the Faust worker (stream_app.faust_app) until SIGTERM or SIGINT: the batch
in flight is finished and its transaction committed before the process exits, so a stop loses
nothing. Any number of workers share the consumer group, the ledger and the trigger state.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from confluent_kafka import Producer
from numpy.typing import NDArray
from prometheus_client import CollectorRegistry

from features.project_repo import project_definitions
from ingest.importer import imported_manifest
from ingest.project import Project, load_project
from model_export.features import logins_per_seat
from model_export.manifest import Registry
from model_export.project_serving import engagement_reference
from policies.arms import ArmConfig
from policies.catalog import default_catalog
from policies.decide import PolicyConfig
from policies.errors import ConfigError
from policies.pacing import Pacer, PacingConfig
from simulator.events import EVENT_TYPES
from simulator.project import SEGMENTS as WORLD_SEGMENTS
from stream_app import kafka_clients
from stream_app.aggregates import ActivityStore
from stream_app.contacts import ContactLog
from stream_app.decision_loop import DecisionLoop, RenewableProducer
from stream_app.engine import DecisionEngine, LoopSettings, assemble
from stream_app.engine.state import DecisionState
from stream_app.event_windows import EventWindowStore
from stream_app.feature_store import FeatureStoreAdapter, ViewWriter
from stream_app.http import serve
from stream_app.ledger import BudgetLedger
from stream_app.ledger_restore import restore_ledger
from stream_app.messages import DECISION_REQUESTED
from stream_app.metrics import EngineMetrics
from stream_app.opt_outs import OptOutStore
from stream_app.outage import wait_out_at_start
from stream_app.project_source import ProjectScoreSource
from stream_app.redis_clients import RedisClient, redis_client
from stream_app.scorer import (
    BaseSummary,
    FeatureScoreSource,
    ServedModel,
    column_default,
    defaults_of,
)
from stream_app.settings import Settings

__all__ = [
    "base_features",
    "base_summary",
    "build_engine",
    "decision_loop",
    "feature_store",
    "policy_config",
    "project_feature_store",
    "project_of",
    "run_worker",
]


def base_features(settings: Settings) -> pd.DataFrame:
    """The offline features of the base: defaults for cold starts, the engagement reference."""
    try:
        profile = pd.read_parquet(settings.feature_data / "profile.parquet")
        engagement = pd.read_parquet(settings.feature_data / "engagement.parquet")
    except OSError:
        raise ConfigError(
            f"no feature sources in {settings.feature_data} (NBA_FEATURE_DATA): nba features build"
        ) from None
    return profile.merge(engagement.drop(columns=["event_timestamp"]), on="customer_id")


def base_summary(settings: Settings) -> BaseSummary:
    """``BaseSummary.of(base_features(settings))``, read a column at a time: a worker keeps only
    the summary, and the whole base of 1,000,000 customers held at once took its start to
    1.5 GB of RSS (benchmarks/memory_bounds.py)."""
    profile, engagement = (
        settings.feature_data / f for f in ("profile.parquet", "engagement.parquet")
    )
    try:
        columns = {
            path: [c for c in pq.read_schema(path).names if not c.startswith("__index_level_")]
            for path in (profile, engagement)
        }
    except OSError:
        raise ConfigError(
            f"no feature sources in {settings.feature_data} (NBA_FEATURE_DATA): nba features build"
        ) from None
    skipped = {profile: {"customer_id"}, engagement: {"customer_id", "event_timestamp"}}
    defaults = {
        column: column_default(pd.read_parquet(path, columns=[column])[column])
        for path, names in columns.items()
        for column in names
        if column not in skipped[path]
    }
    seats = pd.read_parquet(profile, columns=["customer_id", "seats"])
    logins = pd.read_parquet(engagement, columns=["customer_id", "logins_30d"])
    reference = np.sort(logins_per_seat(seats.merge(logins, on="customer_id")))
    return BaseSummary(defaults_of(defaults), reference)


def project_of(settings: Settings) -> Project | None:
    return load_project(settings.project) if settings.project is not None else None


def policy_config(settings: Settings) -> PolicyConfig:
    """The policy the settings describe (catalog, experiment, holdout and exploration shares).
    With NBA_PROJECT, the project file's catalog (when it declares one), segment thresholds and
    contact rules; without, the simulated world's defaults."""
    arms = ArmConfig(
        experiment=settings.experiment,
        holdout_share=settings.holdout_share,
        explore_share=settings.explore_share,
    )
    project = project_of(settings)
    if project is not None:
        return project.policy_config(arms)
    return PolicyConfig(catalog=default_catalog(), segments=WORLD_SEGMENTS, arms=arms)


def event_types(settings: Settings) -> frozenset[str]:
    """The event types the intake accepts: the project file's `events.types` when NBA_PROJECT
    declares them, else the simulated world's; and the decision API's requests."""
    project = project_of(settings)
    if project is not None and project.events is not None:
        return frozenset(project.events.types) | {DECISION_REQUESTED}
    return frozenset(EVENT_TYPES) | {DECISION_REQUESTED}


def trigger_types(settings: Settings) -> frozenset[str]:
    """The event types that trigger a decision: the project file's `events.triggers` when
    NBA_PROJECT declares them, else NBA_TRIGGER_EVENT_TYPES; and the decision API's requests."""
    project = project_of(settings)
    if project is not None and project.events is not None and project.events.triggers:
        return frozenset(project.events.triggers) | {DECISION_REQUESTED}
    return settings.trigger_event_types | {DECISION_REQUESTED}


def decision_loop(
    settings: Settings, metrics: EngineMetrics | None = None, pacer: Pacer | None = None
) -> DecisionLoop:
    """The worker's decide path: the engine, its transactional producer, and a consumer of
    the events topic in NBA_CONSUMER_GROUP. ``pacer`` overrides the configured initial price
    (the demo derives it from yesterday's traffic)."""
    producer = RenewableProducer(
        lambda: kafka_clients.transactional_producer(settings, settings.transactional_id())
    )
    client = redis_client(settings)
    engine = build_engine(settings, cast(Producer, producer), pacer=pacer, metrics=metrics)
    options: dict[str, kafka_clients.ConfigValue] = {
        "isolation.level": "read_committed",
        "fetch.wait.max.ms": settings.kafka_fetch_max_wait_ms,
        # a batch held through an outage must not cost the worker its partitions
        "max.poll.interval.ms": int((settings.max_outage_s + 120.0) * 1000),
    }
    consumer = kafka_clients.consumer(settings, settings.consumer_group, **options)
    consumer.subscribe([settings.topic_events])
    return wait_out_at_start(
        lambda: DecisionLoop(
            consumer=consumer,
            producer=producer,
            engine=engine,
            on_ledger_lost=lambda lost: restore_ledger(
                settings, lost.ledger, DecisionState(client, settings.topic_events)
            ),
        ),
        "the transactional producer",
        settings.max_outage_s,
    )


def build_engine(
    settings: Settings,
    producer: Producer,
    features: FeatureStoreAdapter | None = None,
    pacer: Pacer | None = None,
    metrics: EngineMetrics | None = None,
) -> DecisionEngine:
    """The decision engine for these settings: the promoted bundle (hot-reloaded), features
    from the Feast online store (the stream's short windows written before scoring), the Redis
    ledger, trigger state and contact history; it produces with ``producer``."""
    policy = policy_config(settings)
    registry = Registry(settings.model_registry)
    project = _served_project(settings, registry)
    client = redis_client(settings)
    if project is not None:
        served = ServedModel(registry, policy.catalog, settings.model_reload_s, metrics, project)
        store = features or project_feature_store(settings, project)
        source: FeatureScoreSource | ProjectScoreSource = project_score_source(
            settings, project, served, store, client
        )
    else:
        served = ServedModel(registry, policy.catalog, settings.model_reload_s, metrics)
        store = features or feature_store(settings)
        source = FeatureScoreSource(store.read_batch, served, base_summary(settings))
    ledger = opened_ledger(settings, client)
    return assemble(
        settings=LoopSettings(
            events_topic=settings.topic_events,
            actions_topic=settings.topic_actions,
            dlq_topic=settings.topic_dlq,
            trigger_types=trigger_types(settings),
            min_interval_s=settings.trigger_min_interval_s,
            max_message_bytes=settings.max_message_bytes,
            max_future_s=settings.max_event_future_s,
            event_types=event_types(settings),
            batch_size=settings.batch_size,
            batch_wait_s=settings.batch_wait_s,
            overlap_min_events=settings.overlap_min_events,
            model_version=served.version,
            budget_period=settings.budget_period,
            pacing_start_s=settings.pacing_start.timestamp() if settings.pacing_start else None,
        ),
        policy=policy,
        scores=source.scores,
        contacts=source.contacts,
        producer=producer,
        redis_client=client,
        ledger=ledger,
        pacing=PacingConfig(budget=settings.budget, period_s=settings.pacing_period_s),
        pacer=pacer or Pacer(settings.pacing_initial_price),
        metrics=metrics,
        model_version=lambda: served.version,
        contact_log=ContactLog.for_topic(client, policy.contact, settings.topic_events),
        **_source_hooks(source, store, client, settings.consumer_group),
    )


def project_score_source(
    settings: Settings,
    project: Project,
    model: ServedModel,
    store: FeatureStoreAdapter,
    client: RedisClient,
) -> ProjectScoreSource:
    """A project's scores as a worker reads them: its Feast views, live windows, opt-outs and
    the live view's writer, on ``client``."""
    return ProjectScoreSource(
        project,
        model,
        store,
        client,
        _windows(settings, project),
        OptOutStore(client, project.name, dict(project.opt_outs)),
        _window_writer(store),
        engagement_base(store, project),
    )


def _source_hooks(
    source: FeatureScoreSource | ProjectScoreSource,
    store: FeatureStoreAdapter,
    client: RedisClient,
    consumer_group: str,
) -> dict[str, Any]:
    """What the engine calls per batch beside scoring: a project's live windows, or the
    simulated world's streaming aggregates (kept in Redis and written to Feast); and the notes
    on each action."""
    if isinstance(source, ProjectScoreSource):
        return {"aggregates": source.observe, "annotate": source.annotations}
    activity = ActivityStore(client, consumer_group, store.view_writer("engagement_stream"))
    return {"aggregates": activity.apply, "annotate": source.annotations}


def engagement_base(store: FeatureStoreAdapter, project: Project) -> NDArray[np.float64] | None:
    """The import's sorted values of the project's engagement feature, from the source of the
    Feast view that serves it; None when no view's source holds it (the micro-batch is then
    its own base)."""
    if project.engagement is None:
        return None
    for view in store.definitions.views.values():
        if project.engagement in {f.name for f in view.features}:
            path = getattr(view.batch_source, "path", None)
            if path:
                column = pd.read_parquet(path, columns=[project.engagement])[project.engagement]
                return engagement_reference(column)
    return None


def _window_writer(store: FeatureStoreAdapter) -> ViewWriter | None:
    """The writer of the project's Feast view of its event features, when it has one."""
    if "event_windows" not in store.definitions.views:
        return None
    return store.view_writer("event_windows")


def _served_project(settings: Settings, registry: Registry) -> Project | None:
    """The project whose bundle the worker serves: NBA_PROJECT's, when the promoted model was
    trained for it (`nba train --project`); None for the simulated world's bundle."""
    project = project_of(settings)
    champion = registry.champion()
    if project is None or champion is None:
        return None
    trained_for = registry.manifest(champion).project
    return project if trained_for is not None else None


def _windows(settings: Settings, project: Project) -> EventWindowStore | None:
    """The live windows of the project's declared event features, if it declares any."""
    if not project.event_features:
        return None
    properties = tuple(project.declared_events().properties)
    return EventWindowStore(
        redis_client(settings), settings.consumer_group, project.event_features, properties
    )


def project_feature_store(
    settings: Settings, project: Project, data: Path | None = None
) -> FeatureStoreAdapter:
    """The online store over a project's generated views (features.project_repo), for the
    tables of its import (``data``, default NBA_IMPORTED_DATA)."""
    tables = set(imported_manifest(data or settings.imported_data)["tables"])
    return FeatureStoreAdapter(
        settings,
        settings.feature_repo,
        settings.feature_data,
        project=settings.feature_project,
        generated=project_definitions(project, settings.feature_data, tables),
    )


def opened_ledger(settings: Settings, client: RedisClient) -> BudgetLedger:
    """The period's ledger with its epoch held; one without an epoch (a new period, or a lost
    ledger: only the published actions can tell) is rebuilt from NBA_TOPIC_ACTIONS first."""
    ledger = BudgetLedger(client, settings.budget_period, settings.budget)

    def open_or_restore() -> None:
        if ledger.stored_epoch() is None:
            restore_ledger(settings, ledger, DecisionState(client, settings.topic_events))
        else:
            ledger.open()

    wait_out_at_start(open_or_restore, "the budget ledger", settings.max_outage_s)
    return ledger


def feature_store(settings: Settings) -> FeatureStoreAdapter:
    return FeatureStoreAdapter(
        settings, settings.feature_repo, settings.feature_data, project=settings.feature_project
    )


def run_worker(settings: Settings, on_ready: Callable[[], None] | None = None) -> int:
    """Run the Faust worker until SIGTERM or SIGINT; returns the number of events consumed.
    Meanwhile http://NBA_METRICS_HOST:NBA_METRICS_PORT serves /metrics, /healthz and /readyz."""
    from stream_app.faust_app import create_app

    registry = CollectorRegistry()
    metrics = EngineMetrics.create(registry)
    holder: dict[str, DecisionEngine] = {}
    try:
        server = serve(
            settings.metrics_host,
            settings.metrics_port,
            registry,
            lambda: _readiness(holder, metrics),
        )
    except OSError as exc:
        raise ConfigError(
            f"metrics port {settings.metrics_host}:{settings.metrics_port} is unavailable "
            f"({exc.strerror}); set NBA_METRICS_PORT"
        ) from None
    try:
        app = create_app(settings, metrics)
        holder["engine"] = app.decide.engine
        if on_ready is not None:
            on_ready()
        # As in the API (stream_app.api.server): what start-up loaded (Feast, pandas, the
        # models) lives as long as the process; frozen, a full collection no longer walks it in
        # the middle of a batch.
        gc.freeze()
        app.run()
        return app.consumed
    finally:
        server.shutdown()
        server.server_close()


def _readiness(holder: dict[str, DecisionEngine], metrics: EngineMetrics) -> dict[str, bool]:
    """Ready when the model is loaded and the broker and Redis answer; the dependency gauges
    follow the same checks (on the readiness timer, so they stay true while batches stall)."""
    engine = holder.get("engine")
    if engine is None:
        return {"model_loaded": False}
    answers = engine.dependencies_answer()
    for dependency, answered in answers.items():
        metrics.dependency_up.labels(dependency=dependency).set(1.0 if answered else 0.0)
    return {"model_loaded": True, **answers}
