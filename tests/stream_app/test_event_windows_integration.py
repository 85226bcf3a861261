"""Parity of the stream's and the batch job's event features: the same declarations, events fed
to Redis in shuffled micro-batches with re-sent copies, compared feature by feature."""

from __future__ import annotations

import random
import uuid

import pandas as pd
import pytest
import redis

from features.event_features import event_features
from ingest.project import EventFeature
from simulator.config import validated
from simulator.events import generate_events
from simulator.project import EVENT_FEATURES
from simulator.world import build_world
from stream_app.event_windows import EventWindowStore
from stream_app.messages import EngagementEvent

pytestmark = pytest.mark.integration

DECLARED = tuple(EventFeature.model_validate(f) for f in EVENT_FEATURES)


def test_stream_and_batch_agree_on_every_feature_of_every_customer(redis_url: str) -> None:
    world = build_world(validated(n_customers=2_000, seed=11))
    events = [
        EngagementEvent.model_validate_json(line)
        for _, line in generate_events(world, days=3.0).json_lines()
    ]
    store = EventWindowStore(
        redis.Redis.from_url(redis_url),
        f"parity-{uuid.uuid4().hex[:8]}",
        DECLARED,
        ("feature", "severity"),
    )
    rng = random.Random(3)
    fed = events + rng.sample(events, len(events) // 10)  # a tenth re-sent
    rng.shuffle(fed)  # out of order across and within batches
    for start in range(0, len(fed), 500):
        store.add(fed[start : start + 500])

    table = pd.DataFrame(
        {
            "event_id": [e.event_id for e in events],
            "customer_id": [e.customer_id for e in events],
            "event_type": [e.event_type for e in events],
            "occurred_at": [pd.Timestamp(e.occurred_at) for e in events],
            "feature": [e.properties.get("feature") for e in events],
            "severity": [e.properties.get("severity") for e in events],
        }
    )
    customers = sorted(table["customer_id"].unique())
    mismatches = 0
    for moment in (table["occurred_at"].max(), table["occurred_at"].quantile(0.6)):
        at = pd.Timestamp(moment).floor("us")
        asked = pd.DataFrame({"customer_id": customers, "at": pd.Timestamp(at)})
        batch = event_features(table, asked, DECLARED)
        stream = store.features(customers, at.to_pydatetime())
        close = (batch - stream).abs() <= 1e-9
        mismatches += int((~close).to_numpy().sum())
        assert batch.to_numpy().sum() > 0  # the windows hold events: a real comparison
    assert len(customers) > 1_000 and table["event_type"].eq("login").sum() > 0
    assert mismatches == 0
