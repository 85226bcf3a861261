"""The decision engine: one micro-batch of raw records in, decisions produced in the caller's
Kafka transaction.

Per batch: validate (bad records -> DLQ with a reason; ``Intake``), update the streaming
aggregates and write them to the online store (when a sink is given), pick triggers, look up
earlier decisions for the same triggers (``DecisionState``), score and decide the new ones
(``Decider``), reserve their spend in the Redis ledger and publish to `nba-actions`
(``Publisher``). The caller (stream_app.decision_loop) commits the transaction with the
consumed offsets, then calls ``committed``; or aborts it and calls ``abandoned``.

A trigger decided before is published again only when no read_committed reader can have its
decision yet, so that each trigger has one action message on the topic:

- its decision is marked delivered (set after its transaction committed): skipped;
- its decision's trigger offset lies below the group's committed offset of that partition: the
  transaction that moved the offset past it published it (this covers the moment between a
  commit and its mark): skipped;
- otherwise its transaction was aborted or never committed (a crash, an outage, a rebalance):
  the stored decision, the same bytes, is published again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from policies.decide import PolicyConfig
from simulator.events import EVENT_TYPES
from stream_app.engine.decider import Decider
from stream_app.engine.intake import Intake, ValidEvents
from stream_app.engine.publisher import BatchRecord, Publisher
from stream_app.engine.state import DecisionState
from stream_app.ledger import BudgetLedger, LedgerState
from stream_app.messages import action_id_for
from stream_app.metrics import EngineMetrics, counting_errors, timed
from stream_app.pipeline import (
    DEFAULT_MAX_FUTURE_S,
    RawMessage,
    build_actions,
    select_triggers,
    superseded_requests,
)

__all__ = ["BatchStats", "CommittedOffset", "DecisionEngine", "LoopSettings", "latency_percentiles"]

# What the score source adds to the actions of the triggers just decided (by event id, in
# order): more reason codes ("reasons", appended) and the customer's segments of the feature
# store ("persona", "rfm_segment").
Annotate = Callable[[Sequence[str]], list[dict[str, Any]]]
# The group's committed offset of (topic, partition), None when unknown.
CommittedOffset = Callable[[str, int], int | None]


@dataclass(frozen=True)
class LoopSettings:
    events_topic: str
    actions_topic: str
    dlq_topic: str
    trigger_types: frozenset[str]
    min_interval_s: float
    max_message_bytes: int
    max_future_s: float = DEFAULT_MAX_FUTURE_S  # how far ahead of the clock an event may be
    event_types: frozenset[str] = frozenset(EVENT_TYPES)  # the project's declared types
    batch_size: int = 500
    batch_wait_s: float = 0.05
    # A batch of at least this many events is decided while the last one commits (see
    # stream_app.decision_loop); a smaller one after that commit has landed.
    overlap_min_events: int = 50
    model_version: str = "truth+noise"
    budget_period: str = "demo"
    pacing_start_s: float | None = None  # epoch seconds; None: when the engine starts


@dataclass
class BatchStats:
    consumed: int = 0
    invalid: int = 0
    decided: int = 0
    republished: int = 0
    already_delivered: int = 0  # replayed or re-sent triggers whose decision readers have
    latencies_ms: list[float] = field(default_factory=list)

    def add(self, other: BatchStats) -> None:
        """Count ``other``'s batches in these."""
        self.consumed += other.consumed
        self.invalid += other.invalid
        self.decided += other.decided
        self.republished += other.republished
        self.already_delivered += other.already_delivered
        self.latencies_ms.extend(other.latencies_ms)


class DecisionEngine:
    def __init__(
        self,
        *,
        settings: LoopSettings,
        intake: Intake,
        state: DecisionState,
        decider: Decider,
        publisher: Publisher,
        metrics: EngineMetrics | None = None,
        model_version: Callable[[], str] | None = None,
        aggregates: Callable[[ValidEvents], None] | None = None,
        annotate: Annotate | None = None,
    ) -> None:
        """``model_version``: the version serving right now (it changes on a hot reload);
        defaults to the settings' fixed version. ``aggregates``: called with each batch's valid
        events before any decision (the live windows, the online-store write). ``annotate``: what
        the score source adds to each decision's action (more reasons, segments)."""
        self.settings = settings
        self._intake = intake
        self._state = state
        self._decider = decider
        self._publisher = publisher
        self.metrics = metrics
        self._model_version = model_version or (lambda: settings.model_version)
        self._aggregates = aggregates
        self._annotate = annotate
        self._announced = ""
        self._announce_versions()

    @property
    def policy(self) -> PolicyConfig:
        return self._decider.policy

    @property
    def ledger(self) -> BudgetLedger:
        return self._decider.ledger

    def process(self, raws: list[RawMessage], committed: CommittedOffset) -> BatchStats:
        """Validate, decide and publish one batch inside the caller's open transaction."""
        stats = BatchStats(consumed=len(raws))
        # read even by a batch that spends nothing: a flushed ledger is noticed and rebuilt
        ledger = self.ledger.checked_state()
        valid, rejected = self._intake.accept(raws)
        stats.invalid = len(rejected)
        if self._aggregates is not None and valid:
            with timed(self.metrics, "aggregates"):
                with counting_errors(self.metrics, "feature_store_or_model"):
                    self._aggregates(valid)
        last = self._state.last_triggers({e.customer_id for _, e in valid})
        triggers = select_triggers(
            valid, last, self.settings.trigger_types, self.settings.min_interval_s
        )
        superseded = superseded_requests(valid, triggers, last)
        self._state.mark_superseded(superseded)
        self._publisher.superseded(list(superseded))
        if triggers:
            self._decide(triggers, stats, committed, ledger)
            self._state.remember_triggers([e for _, e in triggers])
        stats.latencies_ms = self._publisher.take_latencies()
        return stats

    def seal(self) -> BatchRecord:
        """What the batch just processed will have done once committed (``Publisher.seal``)."""
        return self._publisher.seal()

    def discard(self) -> None:
        """The batch just processed fails before its transaction: it will be processed again."""
        self._publisher.discard()

    def in_flight(self, record: BatchRecord) -> None:
        """``record``'s transaction is committing while the next batch is processed."""
        self._publisher.in_flight(record)

    def committed(self, record: BatchRecord) -> None:
        """The batch's transaction is committed (see ``Publisher.committed``)."""
        self._publisher.committed(record)

    def abandoned(self) -> None:
        """The sealed batch's transaction was aborted: it will be processed again."""
        self._publisher.abandoned()

    def after_batch(self, lag: int | None = None) -> None:
        """Move the pacing price and refresh the gauges (``lag``: the consumer's backlog)."""
        self._report_state(self._decider.reprice(), lag)

    def dependencies_answer(self) -> dict[str, bool]:
        """For /readyz and the dependency gauges (the worker's readiness timer calls it): does
        the broker answer a metadata request, does Redis answer PING?"""
        return {"kafka": self._publisher.broker_answers(), "redis": self._state.answers()}

    def close(self) -> None:
        self._publisher.close()

    def _decide(
        self,
        triggers: ValidEvents,
        stats: BatchStats,
        committed: CommittedOffset,
        ledger: LedgerState,
    ) -> None:
        ids = [action_id_for(raw.topic, event.event_id) for raw, event in triggers]
        found = self._state.lookup(ids)
        for (raw, event), (payload, delivered) in zip(triggers, found, strict=True):
            if payload is None:
                continue
            if delivered or _committed_before(payload, committed):
                stats.already_delivered += 1  # readers have it: publishing again duplicates it
            else:  # decided in a transaction that did not commit: publish the same bytes
                self._publisher.republish(raw, event, payload, self._capacity_of(payload))
                stats.republished += 1
        fresh = [t for t, (payload, _) in zip(triggers, found, strict=True) if payload is None]
        if not fresh:
            return
        decisions = self._decider.decide(fresh, ledger)
        actions = build_actions(
            decisions,
            fresh,
            self.policy.catalog,
            self._announce_versions(),  # the version that scored this batch
            self.settings.budget_period,
            datetime.now(UTC),
        )
        if self._annotate is not None:
            notes = self._annotate([e.event_id for _, e in fresh])
            actions = [
                a.model_copy(update={**note, "reasons": [*a.reasons, *note.get("reasons", [])]})
                for a, note in zip(actions, notes, strict=True)
            ]
        with timed(self.metrics, "ledger_and_publish"):
            capacity = self._decider.capacity.tolist()
            published = self._publisher.reserve_and_publish(fresh, actions, decisions, capacity)
        stats.decided += len(published)

    def _capacity_of(self, payload: bytes) -> float:
        """The period's capacity of a stored decision's action (inf for do_nothing)."""
        action = json.loads(payload)["action"]
        return float(self._decider.capacity[self.policy.catalog.index(action)])

    def _announce_versions(self) -> str:
        version = self._model_version()
        if self.metrics is not None and version != self._announced:
            self.metrics.versions.info(
                {"model_version": version, "policy_version": self.policy.version}
            )
        self._announced = version
        return version

    def _report_state(self, ledger: LedgerState, lag: int | None) -> None:
        """Budget, capacity and consumer lag gauges, after each batch."""
        if self.metrics is None:
            return
        self.metrics.budget_spent.set(ledger.spent)
        self.metrics.budget_remaining.set(max(self.ledger.budget - ledger.spent, 0.0))
        self.metrics.budget_target.set(self._decider.pacing.target_spend(self._decider.elapsed()))
        left = self._decider.capacity_left(ledger)
        for index, name in enumerate(self.policy.catalog.names):
            if np.isfinite(left[index]):
                self.metrics.capacity_left.labels(action=name).set(left[index])
        if lag is not None:
            self.metrics.consumer_lag.set(lag)


def _committed_before(payload: bytes, committed: CommittedOffset) -> bool:
    """Was the stored decision's trigger below its partition's committed offset?"""
    trigger = json.loads(payload)["trigger"]
    offset = committed(trigger["topic"], int(trigger["partition"]))
    return offset is not None and int(trigger["offset"]) < offset


def latency_percentiles(latencies_ms: Sequence[float]) -> tuple[float, float]:
    if not latencies_ms:
        return 0.0, 0.0
    p50, p99 = np.percentile(np.asarray(latencies_ms), [50, 99])
    return float(p50), float(p99)
