"""The engine's stateful parts alone, against the real Redis and broker: the shared decision
state, and the decider + publisher pair (reservation refusals, stored decisions, delivery)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import redis

from policies.decide import PolicyConfig
from policies.pacing import Pacer, PacingConfig
from simulator.config import WorldConfig
from simulator.sources import WorldScoreSource
from simulator.truth import contact_state, noisy_scores
from simulator.world import build_world
from stream_app import kafka_clients
from stream_app.engine.decider import Decider
from stream_app.engine.publisher import Publisher
from stream_app.engine.state import DecisionState
from stream_app.ledger import BudgetLedger
from stream_app.messages import EngagementEvent, NbaAction
from stream_app.pipeline import RawMessage, build_actions
from stream_app.redis_clients import RedisClient
from stream_app.settings import load_settings
from tests.conftest import TopicFactory, drain

pytestmark = pytest.mark.integration


def _event(customer: str, event_id: str, hour: int = 10) -> EngagementEvent:
    return EngagementEvent(
        event_id=event_id,
        customer_id=customer,
        event_type="login",
        occurred_at=datetime(2026, 12, 1, hour, tzinfo=UTC),
    )


def test_decision_state_is_shared_and_first_write_wins(
    connect_redis: Callable[[], RedisClient],
) -> None:
    client = connect_redis()
    topic = f"events-{uuid.uuid4().hex}"
    state, other_worker = DecisionState(client, topic), DecisionState(client, topic)

    state.remember_triggers([_event("C1", "e1"), _event("C2", "e2", hour=11)])
    last = other_worker.last_triggers({"C1", "C2", "C3"})
    assert last == {
        "C1": (datetime(2026, 12, 1, 10, tzinfo=UTC).timestamp(), "e1"),
        "C2": (datetime(2026, 12, 1, 11, tzinfo=UTC).timestamp(), "e2"),
    }
    assert DecisionState(client, f"{topic}-other").last_triggers({"C1"}) == {}

    action_id = uuid.uuid4().hex
    state.store_decision(action_id, b"first")
    other_worker.store_decision(action_id, b"second")
    assert state.lookup([action_id, "never"]) == [(b"first", False), (None, False)]
    other_worker.mark_delivered([action_id])
    assert state.lookup([action_id]) == [(b"first", True)]
    assert state.answers()


def test_decision_state_says_when_redis_does_not_answer() -> None:
    gone = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    assert DecisionState(gone, "events").answers() is False


def test_decider_and_publisher_reserve_store_and_publish_each_decision(
    kafka_bootstrap: str, redis_url: str, make_topic: TopicFactory
) -> None:
    settings = load_settings(kafka_bootstrap=kafka_bootstrap)
    actions_topic = make_topic("actions", partitions=1)
    client = redis.Redis.from_url(redis_url)
    world = build_world(WorldConfig(n_customers=200, seed=5))
    source = WorldScoreSource(world, noisy_scores(world, 0.2, 1), contact_state(world))
    budget = 150.0  # enough for a few actions: later reservations are refused
    ledger = BudgetLedger(client, f"parts-{uuid.uuid4().hex}", budget=budget)
    policy = PolicyConfig()
    decider = Decider(
        policy=policy,
        scores=source.scores,
        contacts=source.contacts,
        ledger=ledger,
        pacing=PacingConfig(budget=1e9, period_s=3_600.0),
        pacer=Pacer(0.0),  # the pacer would spend; only the ledger holds back
    )
    state = DecisionState(client, f"events-{uuid.uuid4().hex}")
    producer = kafka_clients.transactional_producer(settings, f"t-{uuid.uuid4().hex}")
    producer.init_transactions(30)
    publisher = Publisher(
        producer=producer,
        actions_topic=actions_topic,
        state=state,
        ledger=ledger,
    )
    customers = world.customers["customer_id"].astype(str).tolist()
    fresh = [
        (RawMessage("events", 0, k, c.encode(), b"{}", {}, 0), _event(c, f"e-{k}"))
        for k, c in enumerate(customers)
    ]

    decisions = decider.decide(fresh, ledger.state())
    actions = build_actions(decisions, fresh, policy.catalog, "v-test", "parts", datetime.now(UTC))
    producer.begin_transaction()
    published = publisher.reserve_and_publish(fresh, actions, decisions, decider.capacity.tolist())
    stored = state.lookup([a.action_id for a in published])
    assert not any(delivered for _, delivered in stored), "not committed yet"
    producer.commit_transaction(30)
    publisher.committed(publisher.seal())

    wanted = [a for a in actions if a.action != "do_nothing"]
    refused = [a for a in published if any(r.startswith("ledger:") for r in a.reasons)]
    assert wanted and refused, "the tiny budget grants some reservations and refuses others"
    assert all(a.action == "do_nothing" and a.cost == 0.0 for a in refused)
    assert ledger.spent() == pytest.approx(sum(a.cost for a in published))
    assert ledger.spent() <= budget
    stored = state.lookup([a.action_id for a in published])
    assert [NbaAction.model_validate_json(s) for s, _ in stored if s] == published
    assert all(delivered for _, delivered in stored), "committed: every reader has them"

    consumer = kafka_clients.consumer(
        settings, f"g-{uuid.uuid4().hex}", **{"isolation.level": "read_committed"}
    )
    consumer.subscribe([actions_topic])
    got = drain(consumer, len(published))
    consumer.close()
    assert [json.loads(m.value())["action_id"] for m in got] == [a.action_id for a in published]


def test_a_stored_decision_whose_reservation_was_lost_is_reserved_again_or_replaced(
    kafka_bootstrap: str, redis_url: str, make_topic: TopicFactory
) -> None:
    """A FLUSHALL between a reservation and the store of its decision: the stored decision is
    republished on the batch's next try, and its spend must be in the rebuilt ledger."""
    settings = load_settings(kafka_bootstrap=kafka_bootstrap)
    client = redis.Redis.from_url(redis_url)
    ledger = BudgetLedger(client, f"lost-{uuid.uuid4().hex}", budget=100.0)
    ledger.open(create=True)
    state = DecisionState(client, f"events-{uuid.uuid4().hex}")
    producer = kafka_clients.transactional_producer(settings, f"t-{uuid.uuid4().hex}")
    producer.init_transactions(30)
    publisher = Publisher(
        producer=producer, actions_topic=make_topic("actions"), state=state, ledger=ledger
    )

    def stored(customer: str, cost: float) -> tuple[RawMessage, EngagementEvent, bytes]:
        event = _event(customer, f"e-{customer}")
        action = NbaAction.model_validate(
            {
                "action_id": f"a-{customer}",
                "customer_id": customer,
                "action": "retention_email",
                "channel": "email",
                "expected_value": 10.0,
                "uplift": 0.1,
                "p_churn": 0.3,
                "customer_value": 1000.0,
                "cost": cost,
                "segment": "Re-engage",
                "reasons": ["test"],
                "explanation": "Re-engage, retention_email chosen",
                "arm": "treatment",
                "propensity": 1.0,
                "model_version": "v",
                "policy_version": "p",
                "budget_period": ledger.period,
                "decided_at": datetime(2026, 12, 1, tzinfo=UTC),
                "trigger": {"topic": "events", "partition": 0, "offset": 0, "event_id": "x"},
            }
        )
        payload = action.model_dump_json().encode()
        state.store_decision(action.action_id, payload)  # stored, never reserved
        return RawMessage("events", 0, 0, customer.encode(), b"{}", {}, 0), event, payload

    producer.begin_transaction()
    publisher.republish(*stored("C1", 60.0), capacity=float("inf"))
    publisher.republish(*stored("C2", 60.0), capacity=float("inf"))  # over the budget now
    producer.commit_transaction(30)
    publisher.committed(publisher.seal())

    assert ledger.spent() == pytest.approx(60.0)
    (first, _), (second, _) = state.lookup(["a-C1", "a-C2"])
    assert first is not None and NbaAction.model_validate_json(first).cost == 60.0
    assert second is not None
    replaced = NbaAction.model_validate_json(second)
    assert replaced.action == "do_nothing" and replaced.cost == 0.0
    assert any(r.startswith("ledger:") for r in replaced.reasons)
