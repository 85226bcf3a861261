"""A project's own bundle served by the worker's engine on the real broker, Redis and Feast: the
stream's live event features reach the model, and a burst of support tickets changes a
customer's next decision (issue 19).

The project is made up here so that its truth is known: a retention campaign whose call saves
customers only when they filed three or more support tickets in the 7 days before it. The model
learns that from the event feature computed at each assignment time by the batch executor; the
worker computes the same feature from the live stream.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
import pytest
import yaml
from confluent_kafka import Producer

from features.project_repo import build_project_sources, materialize_window
from ingest.importer import import_project
from ingest.project import load_project
from model_export.experiment import load_campaign
from model_export.manifest import Registry
from model_export.project_models import train_project
from model_export.runs import export_run, save_project_run
from stream_app import kafka_clients
from stream_app.decision_loop import DecisionLoop
from stream_app.messages import EngagementEvent
from stream_app.project_source import ProjectScoreSource
from stream_app.settings import Settings, load_settings
from stream_app.worker import build_engine, project_feature_store
from tests.conftest import TopicFactory, drain, renewable_producer

pytestmark = pytest.mark.integration

ASSIGNED = datetime(2026, 1, 10, tzinfo=UTC)
N = 4_000


def _write_campaign(folder: Path, seed: int = 0) -> Path:
    """customers.csv, events.csv, experiments.csv and the project file; returns its path."""
    rng = np.random.default_rng(seed)
    ids = [f"S{i}" for i in range(N)]
    tickets = np.where(rng.random(N) < 0.3, rng.poisson(4.0, N), rng.poisson(0.3, N))
    pd.DataFrame(
        {
            "customer_id": ids,
            "seats": rng.integers(1, 50, N),
            "plan": rng.choice(["basic", "pro"], N),
            "contract_value": 5_000.0,
            "consent_phone": True,
            "consent_email": True,
        }
    ).to_csv(folder / "customers.csv", index=False)
    rows = []
    for i, k in enumerate(tickets):
        for j in range(int(k)):
            at = ASSIGNED - timedelta(hours=float(rng.uniform(1, 160)))
            rows.append((f"e{i}-{j}", ids[i], "support_ticket", at.isoformat(), 3))
    pd.DataFrame(
        rows, columns=["event_id", "customer_id", "event_type", "occurred_at", "severity"]
    ).to_csv(folder / "events.csv", index=False)
    arm = rng.choice(3, N, p=[0.5, 0.25, 0.25])
    base = 1 / (1 + np.exp(-(2.0 - 0.6 * tickets)))
    uplift = np.select([arm == 1, arm == 2], [0.3 * (tickets >= 3), 0.03], 0.0)
    pd.DataFrame(
        {
            "customer_id": ids,
            "action": np.array(["do_nothing", "account_manager_call", "retention_email"])[arm],
            "assigned_at": ASSIGNED.isoformat(),
            "propensity": np.array([0.5, 0.25, 0.25])[arm],
            "retained": (rng.random(N) < np.clip(base + uplift, 0, 1)).astype(int),
        }
    ).to_csv(folder / "experiments.csv", index=False)
    project = {
        "name": "ticket_saves",
        "sources": {t: {"path": f"{t}.csv"} for t in ("customers", "events", "experiments")},
        "features": [{"name": "seats", "kind": "numeric"}, {"name": "plan", "kind": "categorical"}],
        "events": {
            "types": ["support_ticket", "login"],
            "triggers": ["login"],
            "properties": {"severity": "numeric"},
        },
        "event_features": [
            {
                "name": "tickets_7d",
                "event_type": "support_ticket",
                "aggregate": "count",
                "window": "7d",
            }
        ],
        "outcome": {"name": "retained", "kind": "binary", "window": "90d"},
        "value": {"source": "column", "column": "contract_value"},
        "consent": {"phone": "consent_phone", "email": "consent_email"},
        "catalog": {
            "actions": [
                {"name": "account_manager_call", "channel": "phone", "cost_fixed": 50.0},
                {"name": "retention_email", "channel": "email", "cost_fixed": 1.0},
            ]
        },
    }
    path = folder / "nba.yaml"
    path.write_text(yaml.safe_dump(project))
    return path


def _served_project(
    root: Path, redis_url: str, bootstrap: str, make_topic: TopicFactory
) -> Settings:
    project_file = _write_campaign(root)
    project = load_project(project_file)
    _, imported = import_project(project, root / "imported")
    campaign = load_campaign(imported, project)
    trained = train_project(campaign, "t", seed=0, n_estimators=100)
    registry = Registry(root / "registry")
    export_run(save_project_run(trained, root / "run", ""), registry, "tickets-1")
    registry.promote("tickets-1")
    settings = load_settings(
        kafka_bootstrap=bootstrap,
        redis_url=redis_url,
        project=project_file,
        imported_data=imported,
        model_registry=registry.root,
        feature_repo=root / "repo",
        feature_data=root / "features",
        feature_project=f"p{uuid.uuid4().hex[:8]}",
        topic_events=make_topic("events"),
        topic_actions=make_topic("actions"),
        topic_dlq=make_topic("dlq"),
        consumer_group=f"g-{uuid.uuid4().hex[:8]}",
        trigger_min_interval_s=0.0,
        holdout_share=0.0,
        explore_share=0.0,
        budget_period=f"p-{uuid.uuid4().hex[:8]}",
        budget=1_000_000.0,
        # The period began a day ago: the pacer allows the whole budget, so that what decides
        # is the expected value, not how far into the period the test happens to run.
        pacing_start=datetime.now(UTC) - timedelta(days=1),
    )
    build_project_sources(project, imported, settings.feature_data)
    store = project_feature_store(settings, project)
    store.apply()
    store.materialize(*materialize_window(imported))
    return settings


def _send(settings: Settings, events: list[EngagementEvent]) -> None:
    producer = kafka_clients.producer(settings)
    for event in events:
        producer.produce(
            settings.topic_events,
            key=event.customer_id.encode(),
            value=event.model_dump_json().encode(),
            headers=[("schema-version", b"1")],
        )
    assert producer.flush(30) == 0


def test_a_burst_of_support_tickets_changes_the_next_decision(
    kafka_bootstrap: str, redis_url: str, make_topic: TopicFactory, tmp_path: Path
) -> None:
    settings = _served_project(tmp_path, redis_url, kafka_bootstrap, make_topic)
    producer = renewable_producer(settings)
    engine = build_engine(settings, cast(Producer, producer))
    source = engine._decider._scores.__self__  # type: ignore[attr-defined]
    assert isinstance(source, ProjectScoreSource)
    consumer = kafka_clients.consumer(settings, settings.consumer_group)
    consumer.subscribe([settings.topic_events])
    loop = DecisionLoop(consumer=consumer, producer=producer, engine=engine)
    reader = kafka_clients.consumer(
        settings, f"r-{uuid.uuid4().hex[:8]}", **{"isolation.level": "read_committed"}
    )
    reader.subscribe([settings.topic_actions])
    quiet = "S0"  # any customer: the live stream starts with no ticket for anyone
    now = datetime.now(UTC) - timedelta(minutes=30)

    def login(minute: int) -> EngagementEvent:
        return EngagementEvent(
            event_id=f"login-{minute}",
            customer_id=quiet,
            event_type="login",
            occurred_at=now + timedelta(minutes=minute),
        )

    _send(settings, [login(0)])
    _run(loop, 1)
    tickets = [
        EngagementEvent(
            event_id=f"ticket-{k}",
            customer_id=quiet,
            event_type="support_ticket",
            occurred_at=now + timedelta(minutes=1 + k),
            properties={"severity": 4},
        )
        for k in range(5)
    ]
    _send(settings, [*tickets, login(10)])
    _run(loop, 6)
    actions = [json.loads(m.value()) for m in drain(reader, 2)]
    assert [a["trigger"]["event_id"] for a in actions] == ["login-0", "login-10"]
    before, after = actions
    assert before["action"] != "account_manager_call", before
    assert after["action"] == "account_manager_call", after
    assert after["p_churn"] > before["p_churn"]
    # The reasons name what moved the risk: the live ticket count first, raising it.
    drivers = [r.split(":") for r in after["reasons"] if r.startswith("driver:")]
    assert drivers[0][1] == "tickets_7d" and float(drivers[0][2]) > 0, after["reasons"]
    seen = source.frame([quiet], ["login-10"]).iloc[0]
    assert seen["tickets_7d"] == 5  # the five tickets, not the login that asked
    loop.close()
    reader.close()


def _run(loop: DecisionLoop, events: int) -> None:
    consumed = 0
    for _ in range(200):
        consumed += loop.run_once().consumed
        if consumed >= events:
            return
    raise AssertionError(f"the loop consumed {consumed} of {events} events")
