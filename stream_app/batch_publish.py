"""`nba score --all --publish`: a batch run's decisions through the engine's own state.

Batch mode alone writes a parquet of decisions. Published, a batch run is one more source of
decisions beside the stream, under the same rules:

- its budget is the period's ledger (``NBA_BUDGET``, ``NBA_BUDGET_PERIOD``): the allocation gets
  what the stream and earlier runs have left (``--budget`` may cap it lower), and each action's
  capacity less what the period has used;
- the contact history the stream keeps for ``NBA_TOPIC_EVENTS`` applies (cooldowns, the contact
  limit), and the run's contacts are recorded in it, so the stream respects them too;
- every decision goes through the stream's `Publisher`: its spend reserved in the ledger (a
  refusal becomes do_nothing with a ``ledger:`` reason), stored by action_id (the API's lookups
  see it), and published on ``NBA_TOPIC_ACTIONS`` in Kafka transactions, one per part of
  ``_PART`` customers, with the same reasons and arms a stream decision carries. The topic is the
  durable record a lost ledger is rebuilt from, so a batch run's spend survives a FLUSHALL too.

A run has an id (``--run-id``; by default the period and the snapshot's checksum): each
customer's action_id derives from it (trigger topic ``nba-batch:<run id>``), so running the same
run again publishes only what its first try did not deliver, and never pays twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from confluent_kafka import Producer

from policies.allocation import DO_NOTHING
from policies.decide import Decisions, PolicyConfig
from policies.rules import ContactState
from stream_app.contacts import ContactLog
from stream_app.engine.intake import ValidEvents
from stream_app.engine.publisher import Publisher
from stream_app.engine.state import DecisionState
from stream_app.kafka_clients import transactional_producer
from stream_app.ledger import BudgetLedger
from stream_app.messages import EngagementEvent, action_id_for
from stream_app.pipeline import RawMessage, build_actions
from stream_app.redis_clients import RedisClient, redis_client
from stream_app.settings import Settings
from stream_app.worker import opened_ledger

__all__ = ["BATCH_EVENT", "BatchPublication", "EngineState", "default_run_id"]

BATCH_EVENT = "batch_run"  # the event type of a batch decision's trigger
_PART = 20_000  # customers per Kafka transaction


def default_run_id(period: str, snapshot: Path) -> str:
    """The period and the snapshot file's checksum: the same file scored again in the same
    period is the same run."""
    digest = hashlib.sha256(snapshot.read_bytes()).hexdigest()[:16]
    return f"{period}-{digest}"


@dataclass(frozen=True)
class BatchPublication:
    run_id: str
    published: int  # decisions published now (do_nothing included)
    already_delivered: int  # decisions an earlier try of the run delivered: not again
    actions: int  # published decisions that act
    refused: int  # actions the ledger refused (published as do_nothing)
    spend: float


class EngineState:
    """The engine's shared state a batch run decides under and writes to."""

    def __init__(self, settings: Settings, policy: PolicyConfig) -> None:
        self.settings = settings
        self.client: RedisClient = redis_client(settings)
        self.ledger: BudgetLedger = opened_ledger(settings, self.client)
        self.decisions = DecisionState(self.client, settings.topic_events)
        self.contacts = ContactLog.for_topic(self.client, policy.contact, settings.topic_events)
        self.capacity = policy.catalog.capacities()
        self.catalog = policy.catalog

    def budget_left(self) -> float:
        return max(self.settings.budget - self.ledger.spent(), 0.0)

    def capacity_left(self) -> np.ndarray:
        """Each action's capacity this period less what the period has used."""
        return self.ledger.capacity_left(self.catalog.names, self.capacity)

    def contact_state(
        self, consent: np.ndarray, customers: list[str], now: datetime
    ) -> ContactState:
        """Consent, with each customer's contact history as of ``now``."""
        fresh = ContactState.fresh(len(customers), consent)
        return self.contacts.apply(fresh, customers, [now.timestamp()] * len(customers))

    def publish(
        self,
        customers: list[str],
        decisions: Decisions,
        model_version: str,
        run_id: str,
        now: datetime,
    ) -> BatchPublication:
        """Reserve, store and publish every decision, a part per transaction."""
        producer = transactional_producer(
            self.settings, f"{self.settings.transactional_id()}-batch"
        )
        producer.init_transactions(30)
        publisher = Publisher(
            producer=producer,
            actions_topic=self.settings.topic_actions,
            state=self.decisions,
            ledger=self.ledger,
            contact_log=self.contacts,
        )
        run = _Run(self, publisher, producer, f"nba-batch:{run_id}", customers, decisions)
        try:
            for start in range(0, len(customers), _PART):
                run.publish_part(
                    range(start, min(start + _PART, len(customers))), model_version, now
                )
        finally:
            producer.flush(30)
        return BatchPublication(
            run_id, run.published, run.delivered, run.actions, run.refused, round(run.spend, 2)
        )


@dataclass
class _Run:
    """One batch run's publication in progress, and its counts."""

    state: EngineState
    publisher: Publisher
    producer: Producer
    topic: str  # the triggers' topic: the run's action_ids derive from it
    customers: list[str]
    decisions: Decisions
    published: int = 0
    delivered: int = 0
    actions: int = 0
    refused: int = 0
    spend: float = 0.0

    def publish_part(self, rows: range, model_version: str, now: datetime) -> None:
        """These customers' decisions in one transaction, but for those an earlier try of the
        run delivered."""
        ids = [action_id_for(self.topic, self._event_id(i)) for i in rows]
        done = [delivered for _, delivered in self.state.decisions.lookup(ids)]
        self.delivered += sum(done)
        todo = np.array([i for i, d in zip(rows, done, strict=True) if not d], dtype=np.int64)
        if todo.size == 0:
            return
        part = self.decisions.rows(todo)
        triggers: ValidEvents = [self._trigger(int(i), now) for i in todo]
        actions = build_actions(
            part,
            triggers,
            self.state.catalog,
            model_version,
            self.state.settings.budget_period,
            now,
        )
        self.producer.begin_transaction()
        try:
            capacity = self.state.capacity.tolist()
            finals = self.publisher.reserve_and_publish(triggers, actions, part, capacity)
            self.producer.commit_transaction()
        except BaseException:
            self.publisher.discard()
            self.producer.abort_transaction()
            raise
        self.publisher.committed(self.publisher.seal())
        acted = [f for f in finals if f.action != "do_nothing"]
        self.published += len(finals)
        self.actions += len(acted)
        self.refused += int(np.sum(part.action != DO_NOTHING)) - len(acted)
        self.spend += sum(f.cost for f in acted)

    def _event_id(self, i: int) -> str:
        return f"{self.topic}:{self.customers[i]}"

    def _trigger(self, i: int, now: datetime) -> tuple[RawMessage, EngagementEvent]:
        customer = self.customers[i]
        event = EngagementEvent(
            event_id=self._event_id(i),
            customer_id=customer,
            event_type=BATCH_EVENT,
            occurred_at=now,
        )
        return RawMessage(self.topic, 0, i, customer.encode(), None), event
