"""Engagement and outcome events: contract shape, order, drift, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest

from policies.errors import ConfigError
from simulator.config import WorldConfig
from simulator.events import EVENT_TYPES, generate_events, outcome_events
from simulator.world import World, build_world


@pytest.fixture(scope="module")
def world() -> World:
    return build_world(WorldConfig(n_customers=20_000, seed=11))


def test_events_are_time_ordered_json_in_the_contract(world: World) -> None:
    events = generate_events(world, days=1.0)
    assert np.all(np.diff(events.occurred_s) >= 0)
    lines = list(events.json_lines())
    assert len(lines) == len(events) > 50_000
    kinds = set()
    for key, raw in lines[:: max(1, len(lines) // 5000)]:
        message = json.loads(raw)
        assert set(message) == {
            "event_id",
            "customer_id",
            "event_type",
            "occurred_at",
            "properties",
        }
        assert message["customer_id"] == key
        kinds.add(message["event_type"])
    assert {"login", "feature_used", "page_view"} <= kinds
    all_kinds = {EVENT_TYPES[k] for k in np.unique(events.event_type)}
    assert all_kinds == set(EVENT_TYPES)


def test_same_seed_same_stream(world: World) -> None:
    a = list(generate_events(world, days=0.2).json_lines(0, 1000))
    b = list(generate_events(world, days=0.2).json_lines(0, 1000))
    assert a == b


def test_would_be_churners_disengage_over_the_window(world: World) -> None:
    events = generate_events(world, days=10.0)
    logins = events.event_type == EVENT_TYPES.index("login")
    churner = ~world.retained[events.customer_index, 0]
    late = events.occurred_s > 5 * 86_400
    early_rate = (logins & churner & ~late).sum() / (logins & ~churner & ~late).sum()
    late_rate = (logins & churner & late).sum() / (logins & ~churner & late).sum()
    assert late_rate < 0.8 * early_rate


def test_outcomes_follow_the_potential_outcomes(world: World) -> None:
    customers = np.arange(200)
    call = np.full(200, world.actions.index("account_manager_call"))
    messages = outcome_events(world, customers, call, [f"a{i}" for i in range(200)])
    renewals = [m for m in messages if m["outcome_type"] in ("renewed", "churned")]
    assert len(renewals) == 200
    for message, i in zip(renewals, customers, strict=True):
        assert (message["outcome_type"] == "renewed") == bool(world.retained[i, call[0]])
        assert message["action_id"] == f"a{i}"


def test_bad_window_is_refused(world: World) -> None:
    with pytest.raises(ConfigError, match="days"):
        generate_events(world, days=0)
