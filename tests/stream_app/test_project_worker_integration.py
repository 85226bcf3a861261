"""A project's own bundle served by the worker's engine on the real broker, Redis and Feast: the
stream's live event features reach the model, and a burst of support tickets changes a
customer's next decision (issue 19).

The project (simulator/ticket_campaign.py) is made up so that its truth is known: a retention
campaign whose call saves customers only when they filed three or more support tickets in the 7
days before it. The model learns that from the event feature computed at each assignment time by
the batch executor; the worker computes the same feature from the live stream.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from confluent_kafka import Producer

from features.event_features import mismatches
from features.project_repo import build_project_sources, materialize_window
from ingest.importer import import_project, imported_table
from ingest.project import load_project
from model_export.experiment import load_campaign
from model_export.manifest import Registry
from model_export.project_models import train_project
from model_export.project_serving import ProjectScorer, project_scores
from model_export.runs import export_run, save_project_run
from nba.replay import send_events
from policies.arms import ArmConfig
from policies.value import expected_value
from simulator.ticket_campaign import live_week, write_ticket_campaign
from stream_app import kafka_clients
from stream_app.decision_loop import DecisionLoop
from stream_app.messages import EngagementEvent, events_from_frame
from stream_app.project_source import ProjectScoreSource
from stream_app.settings import Settings, load_settings
from stream_app.worker import build_engine, engagement_base, project_feature_store
from tests.conftest import TopicFactory, drain, renewable_producer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(
    kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """The project trained, exported, promoted and loaded into Feast (topics come per test)."""
    root = tmp_path_factory.mktemp("ticket-saves")
    project_file = write_ticket_campaign(root)
    project = load_project(project_file)
    _, imported = import_project(project, root / "imported")
    campaign = load_campaign(imported, project)
    trained = train_project(campaign, "t", seed=0, n_estimators=100)
    registry = Registry(root / "registry")
    export_run(save_project_run(trained, root / "run", ""), registry, "tickets-1")
    registry.promote("tickets-1")
    settings = load_settings(
        kafka_bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        project=project_file,
        imported_data=imported,
        model_registry=registry.root,
        feature_repo=root / "repo",
        feature_data=root / "features",
        feature_project=f"p{uuid.uuid4().hex[:8]}",
        trigger_min_interval_s=0.0,
        holdout_share=0.0,
        explore_share=0.0,
        budget=1_000_000.0,
        # The period began a day ago: the pacer allows the whole budget, so that what decides
        # is the expected value, not how far into the period the test happens to run.
        pacing_start=datetime.now(UTC) - timedelta(days=1),
    )
    build_project_sources(project, imported, settings.feature_data)
    _materialize(settings)
    return settings


def _materialize(settings: Settings) -> None:
    """The batch load: the import's profile and event windows into the online store."""
    assert settings.project is not None and settings.imported_data is not None
    store = project_feature_store(settings, load_project(settings.project))
    store.apply()
    store.materialize(*materialize_window(settings.imported_data))


class _Engine:
    """A worker's engine on topics of this test's own, and a read_committed reader of its
    actions."""

    def __init__(self, served: Settings, make_topic: TopicFactory) -> None:
        self.settings = served.model_copy(
            update={
                "topic_events": make_topic("events"),
                "topic_actions": make_topic("actions"),
                "topic_dlq": make_topic("dlq"),
                "consumer_group": f"g-{uuid.uuid4().hex[:8]}",
                "budget_period": f"p-{uuid.uuid4().hex[:8]}",
            }
        )
        producer = renewable_producer(self.settings)
        self.engine = build_engine(self.settings, cast(Producer, producer))
        consumer = kafka_clients.consumer(self.settings, self.settings.consumer_group)
        consumer.subscribe([self.settings.topic_events])
        self.loop = DecisionLoop(consumer=consumer, producer=producer, engine=self.engine)
        self.reader = kafka_clients.consumer(
            self.settings, f"r-{uuid.uuid4().hex[:8]}", **{"isolation.level": "read_committed"}
        )
        self.reader.subscribe([self.settings.topic_actions])

    def decide(self, events: list[EngagementEvent]) -> list[dict[str, Any]]:
        """Send ``events``, run the loop until it consumed them, read the decisions it made."""
        send_events(kafka_clients.producer(self.settings), self.settings.topic_events, events)
        consumed, decided = 0, 0
        for _ in range(400):
            stats = self.loop.run_once()
            consumed, decided = consumed + stats.consumed, decided + stats.decided
            if consumed >= len(events):
                return [json.loads(m.value()) for m in drain(self.reader, decided)]
        raise AssertionError(f"the loop consumed {consumed} of {len(events)} events")

    def close(self) -> None:
        self.loop.close()
        self.reader.close()


def _best_emailed(served: Settings, k: int) -> list[str]:
    """Customers (not S2) for whom, without recent tickets, the model's best action is the
    e-mail: their decisions show what consent changes."""
    assert served.project is not None and served.imported_data is not None
    project = load_project(served.project)
    customers = imported_table(served.imported_data, "customers").assign(tickets_7d=0.0)
    catalog = project.policy_config(ArmConfig()).catalog
    scorer = ProjectScorer.load(Registry(served.model_registry), project, catalog)
    scores = project_scores(customers, project, scorer.predict(customers))
    ev = expected_value(
        scores.uplift_retention,
        scores.uplift_expansion,
        scores.customer_value,
        catalog.cost_matrix(scores.customer_value),
    )
    email, call = catalog.index("retention_email"), catalog.index("account_manager_call")
    best = (ev[:, email] > 0) & (ev[:, email] >= ev[:, call]) & (customers["customer_id"] != "S2")
    return customers.loc[best, "customer_id"].astype(str).head(k).tolist()


def _event(customer: str, kind: str, event_id: str, at: datetime, **props: Any) -> EngagementEvent:
    return EngagementEvent(
        event_id=event_id, customer_id=customer, event_type=kind, occurred_at=at, properties=props
    )


def test_a_burst_of_support_tickets_changes_the_next_decision(
    served: Settings, make_topic: TopicFactory
) -> None:
    worker = _Engine(served, make_topic)
    source = worker.engine._decider._scores.__self__  # type: ignore[attr-defined]
    assert isinstance(source, ProjectScoreSource)
    # Any customer who may be called: the live stream starts with no ticket for anyone.
    assert served.imported_data is not None
    customers = imported_table(served.imported_data, "customers")
    quiet = str(customers.loc[customers["consent_phone"], "customer_id"].iloc[0])
    now = datetime.now(UTC) - timedelta(minutes=30)
    [before] = worker.decide([_event(quiet, "login", "login-0", now)])
    tickets = [
        _event(quiet, "support_ticket", f"ticket-{k}", now + timedelta(minutes=1 + k), severity=4)
        for k in range(5)
    ]
    [after] = worker.decide(
        [*tickets, _event(quiet, "login", "login-10", now + timedelta(minutes=10))]
    )
    assert before["action"] != "account_manager_call", before
    assert after["action"] == "account_manager_call", after
    assert after["p_churn"] > before["p_churn"]
    assert after["persona"] is None and after["rfm_segment"] is None  # the project has neither
    # The reasons name what moved the risk: the live ticket count first, raising it.
    drivers = [r.split(":") for r in after["reasons"] if r.startswith("driver:")]
    assert drivers[0][1] == "tickets_7d" and float(drivers[0][2]) > 0, after["reasons"]
    # What the model saw went to the project's Feast view before the batch was scored.
    assert served.project is not None
    store = project_feature_store(worker.settings, load_project(served.project))
    assert store.read_batch([quiet]).iloc[0]["tickets_7d"] == 5  # not the login that asked
    # A batch's reads (profile, stored events, opt-outs, the event time Feast holds for the
    # view) take one round trip, and the live features' write one more.
    trigger = _event(quiet, "login", "login-11", now + timedelta(minutes=11))
    source.observe([(None, trigger)])  # type: ignore[list-item]  # no raw record here
    opened: list[bool] = []
    pipeline = source._client.pipeline

    def counted(**options: Any) -> Any:
        opened.append(True)
        return pipeline(**options)

    source._client.pipeline = counted  # type: ignore[method-assign,assignment]
    scored = source.scores([quiet], [trigger.event_id])
    source._client.pipeline = pipeline  # type: ignore[method-assign]
    assert len(opened) == 2 and scored.customer_ids == [quiet]
    worker.close()


def test_an_opt_out_withdraws_consent_at_once_and_a_batch_load_does_not_restore_it(
    served: Settings, make_topic: TopicFactory
) -> None:
    worker = _Engine(served, make_topic)
    now = datetime.now(UTC) - timedelta(minutes=30)
    fan, opted = _best_emailed(served, 2)
    calm = "S2"  # flagged do-not-disturb in the data
    first = worker.decide(
        [
            _event(fan, "login", "fan-login", now),
            _event(opted, "unsubscribe", "opted-out", now),
            _event(opted, "login", "opted-login", now + timedelta(minutes=1)),
            _event(calm, "login", "calm-login", now),
        ]
    )
    by_customer = {a["customer_id"]: a for a in first}
    assert by_customer[fan]["action"] == "retention_email", by_customer[fan]
    assert by_customer[opted]["action"] != "retention_email"
    assert "blocked:retention_email:no_consent" in by_customer[opted]["reasons"]
    assert by_customer[calm]["action"] == "do_nothing"
    assert any(r.endswith(":do_not_disturb") for r in by_customer[calm]["reasons"])
    _materialize(worker.settings)  # the profile, whose consent column still says yes
    [again] = worker.decide([_event(opted, "login", "opted-again", now + timedelta(minutes=5))])
    assert again["action"] != "retention_email"
    assert "blocked:retention_email:no_consent" in again["reasons"]
    worker.close()


def test_the_workers_event_features_match_the_batch_jobs(
    served: Settings, make_topic: TopicFactory
) -> None:
    """Parity through Kafka, the engine, Redis and Feast (benchmarks/stream_features.py runs
    it at 10,000 customers): every value the worker wrote to Feast at a customer's last decided
    trigger is the batch job's at that trigger's time, from the same events."""
    assert served.project is not None and served.imported_data is not None
    project = load_project(served.project)
    worker = _Engine(served, make_topic)
    customers = [f"S{i}" for i in range(100, 400)]
    week = live_week(customers, datetime.now(UTC) - timedelta(minutes=5), seed=3)
    decisions = worker.decide(events_from_frame(week, ["severity"]))
    worker.close()
    decided = week[week["event_id"].isin({d["trigger"]["event_id"] for d in decisions})]
    last = decided.groupby("customer_id")["occurred_at"].max().reset_index(name="at")
    assert len(last) == len(customers)  # every customer's first login at least is decided
    store = project_feature_store(worker.settings, project)
    online = store.read_batch(last["customer_id"].tolist())
    assert online["tickets_7d"].sum() > 0
    assert mismatches(online, week, last, project.event_features) == 0


def test_a_worker_ranks_engagement_against_the_imported_base(served: Settings) -> None:
    """The engagement reference a worker keeps is the import's column, read from the source of
    the Feast view that serves it, so that a micro-batch is not its own base."""
    assert served.project is not None and served.imported_data is not None
    project = load_project(served.project)
    store = project_feature_store(served, project)
    numeric = next(f.name for f in project.features if f.kind.value == "numeric")
    engaged = project.model_copy(update={"engagement": numeric})
    base = engagement_base(store, engaged)
    customers = imported_table(served.imported_data, "customers")
    assert base is not None
    assert base.tolist() == sorted(customers[numeric].dropna().astype(float).tolist())
    assert engagement_base(store, project) is None  # the project declares none
