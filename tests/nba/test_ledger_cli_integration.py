"""`nba ledger status | rebuild` against the real broker and Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import pytest
import redis

from stream_app import kafka_clients
from stream_app.ledger import BudgetLedger
from stream_app.messages import NbaAction, Trigger
from stream_app.settings import load_settings
from tests.conftest import TopicFactory

pytestmark = pytest.mark.integration


def _action(action_id: str, action: str, cost: float, period: str) -> bytes:
    return (
        NbaAction(
            action_id=action_id,
            customer_id="C1",
            action=action,
            channel="email" if action != "do_nothing" else "none",
            expected_value=1.0,
            uplift=0.1,
            p_churn=0.2,
            customer_value=100.0,
            cost=cost,
            segment="Monitor Only",
            reasons=["test"],
            explanation="test",
            arm="treatment",
            propensity=1.0,
            model_version="m",
            policy_version="p",
            budget_period=period,
            decided_at=datetime.now(UTC),
            trigger=Trigger(topic="events", partition=0, offset=0, event_id=action_id),
        )
        .model_dump_json()
        .encode()
    )


def _nba(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nba", *argv], capture_output=True, text=True, env=env, check=False
    )


def test_rebuild_counts_the_periods_actions_once_and_refuses_to_overwrite_a_live_ledger(
    kafka_bootstrap: str, redis_url: str, make_topic: TopicFactory
) -> None:
    period = f"p-{uuid.uuid4().hex[:8]}"
    topic = make_topic("actions", partitions=2)
    producer = kafka_clients.producer(load_settings(kafka_bootstrap=kafka_bootstrap))
    for value in [
        _action("a-1", "retention_email", 7.0, period),
        _action("a-2", "discount_offer", 50.0, period),
        _action("a-1", "retention_email", 7.0, period),  # republished: counts once
        _action("a-3", "do_nothing", 0.0, period),
        _action("a-4", "discount_offer", 50.0, "another-period"),
    ]:
        producer.produce(topic, key=b"C1", value=value)
    assert producer.flush(30) == 0
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NBA_")},
        "NBA_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "NBA_REDIS_URL": redis_url,
        "NBA_TOPIC_ACTIONS": topic,
        "NBA_BUDGET_PERIOD": period,
        "NBA_BUDGET": "1000",
    }

    assert "NO EPOCH" in _nba(env, "ledger", "status").stdout
    rebuilt = _nba(env, "ledger", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "3 actions, spent $57.00" in rebuilt.stdout
    ledger = BudgetLedger(redis.Redis.from_url(redis_url), period, 1_000.0)
    assert ledger.counts() == {"retention_email": 1, "discount_offer": 1}
    assert "spent $57.00 of $1,000.00" in _nba(env, "ledger", "status").stdout

    refused = _nba(env, "ledger", "rebuild")
    assert refused.returncode == 2 and "pass --force" in refused.stderr
    assert _nba(env, "ledger", "rebuild", "--force").returncode == 0
    assert ledger.spent() == 57.0
