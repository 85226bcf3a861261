"""The decision engine: one micro-batch of raw records in, decisions published, at least once.

Per batch: validate (bad records -> DLQ with a reason), update the streaming aggregates and
write them to the online store (when a sink is given), pick triggers, look up earlier decisions
for the same triggers (a replay republishes the stored decision, never a new one), score and
decide the new ones, reserve their spend in the Redis ledger, publish to `nba-actions`, store
the decisions and the contacts. The caller flushes and then commits the consumed offsets:
the Faust worker (stream_app.faust_app) and the in-process loop (stream_app.decision_loop)
drive the very same engine.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import redis
from confluent_kafka import KafkaError, Message, Producer
from numpy.typing import NDArray

from policies.allocation import DO_NOTHING
from policies.decide import Decisions, PolicyConfig, Scores, decide_stream
from policies.pacing import Pacer, PacingConfig
from policies.rules import ContactState
from stream_app.contacts import ContactLog
from stream_app.ledger import BudgetLedger
from stream_app.messages import DlqRecord, EngagementEvent, NbaAction, Trigger, action_id_for
from stream_app.metrics import EngineMetrics
from stream_app.pipeline import RawMessage, build_actions, parse_events, select_triggers

__all__ = ["BatchStats", "DecisionEngine", "LoopSettings", "latency_percentiles"]

ScoreSource = Callable[[Sequence[str], Sequence[str]], Scores]
ContactSource = Callable[[Sequence[str]], ContactState]
_DECISION_TTL_S = 14 * 86_400
# Per events topic: engines (or tests) reading other topics never share trigger state.
_LAST_TRIGGER_KEY = "nba:last-trigger:{topic}"
_DEPENDENCY_CHECK_S = 10.0
# Delivery errors after which the record may still be on the broker (librdkafka's "possibly
# persisted"): its reservation must stay, or a record the CRM got would no longer be paid for.
_MAYBE_WRITTEN = frozenset(
    {
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        KafkaError._PURGE_INFLIGHT,
    }
)


@dataclass(frozen=True)
class LoopSettings:
    events_topic: str
    actions_topic: str
    dlq_topic: str
    trigger_types: frozenset[str]
    min_interval_s: float
    max_message_bytes: int
    batch_size: int = 500
    batch_wait_s: float = 0.05
    model_version: str = "truth+noise"
    budget_period: str = "demo"
    pacing_start_s: float | None = None  # epoch seconds; None: when the engine starts


@dataclass
class BatchStats:
    consumed: int = 0
    invalid: int = 0
    decided: int = 0
    republished: int = 0
    latencies_ms: list[float] = field(default_factory=list)


class DecisionEngine:
    def __init__(
        self,
        *,
        settings: LoopSettings,
        policy: PolicyConfig,
        scores: ScoreSource,
        contacts: ContactSource,
        producer: Producer,
        redis_client: redis.Redis,
        ledger: BudgetLedger,
        pacing: PacingConfig,
        pacer: Pacer,
        metrics: EngineMetrics | None = None,
        model_version: Callable[[], str] | None = None,
        contact_log: ContactLog | None = None,
        aggregates: Callable[[list[tuple[RawMessage, EngagementEvent]]], None] | None = None,
    ) -> None:
        """``model_version``: the version serving right now (it changes on a hot reload);
        defaults to the settings' fixed version. ``contact_log``: the persisted contact history
        (none: customers are taken as never contacted). ``aggregates``: called with each batch's
        valid events before any decision (the Faust worker's table and online-store write)."""
        self.settings = settings
        self._model_version = model_version or (lambda: settings.model_version)
        self._contact_log = contact_log
        self._aggregates = aggregates
        self._announced = ""
        self.policy = policy
        self._scores = scores
        self._contacts = contacts
        self._producer = producer
        self._redis = redis_client
        self.ledger = ledger
        self.pacing = pacing
        self.pacer = pacer
        start = settings.pacing_start_s
        self._pacing_origin = time.time() if start is None else start
        self._capacity = policy.catalog.capacities()
        self._metrics = metrics
        self._checked_at = float("-inf")
        self._trigger_key = _LAST_TRIGGER_KEY.format(topic=settings.events_topic)
        self._undelivered: list[tuple[str | None, KafkaError]] = []
        self._contacts_pending: list[tuple[str, str, float]] = []
        self._announce_versions()

    def _announce_versions(self) -> str:
        version = self._model_version()
        if self._metrics is not None and version != self._announced:
            self._metrics.versions.info(
                {"model_version": version, "policy_version": self.policy.version}
            )
        self._announced = version
        return version

    def process(self, raws: list[RawMessage]) -> BatchStats:
        """Validate, decide and publish one batch; the caller then calls ``flush``."""
        stats = BatchStats(consumed=len(raws))
        valid, rejected = parse_events(raws, self.settings.max_message_bytes)
        for record in rejected:
            self._producer.produce(self.settings.dlq_topic, value=record.model_dump_json().encode())
        stats.invalid = len(rejected)
        self._count_events(valid, rejected)
        if self._aggregates is not None and valid:
            with self._timed("aggregates"), self._counting_errors("feature_store_or_model"):
                self._aggregates(valid)
        last = self._last_triggers({e.customer_id for _, e in valid})
        triggers = select_triggers(
            valid, last, self.settings.trigger_types, self.settings.min_interval_s
        )
        if triggers:
            self._decide(triggers, stats)
            self._remember_triggers(triggers)
        return stats

    def flush(self) -> None:
        """Wait until every record of the batch is on the broker; only then may offsets move.

        A new decision whose record the broker refused is undone: its reservation released and
        its stored decision dropped, so the replay of its trigger decides and reserves afresh.
        Either way the batch fails and its offsets stay uncommitted. The batch's contacts enter
        the contact history only once delivered."""
        pending = self._producer.flush(30)
        undelivered, self._undelivered = self._undelivered, []
        contacts, self._contacts_pending = self._contacts_pending, []
        refused = [
            action_id
            for action_id, error in undelivered
            if action_id is not None and error.code() not in _MAYBE_WRITTEN
        ]
        for action_id in refused:
            self.ledger.release(action_id)
            self._redis.delete(f"nba:decision:{action_id}")
        if pending or undelivered:
            first = undelivered[0][1].str() if undelivered else "timed out"
            raise RuntimeError(
                f"kafka: {pending + len(undelivered)} decision(s) not delivered ({first}); "
                f"{len(refused)} reservation(s) released; offsets stay uncommitted"
            )
        if self._contact_log is not None:
            self._contact_log.record(contacts)

    def after_batch(self, lag: int | None = None) -> None:
        """Move the pacing price and refresh the gauges (``lag``: the consumer's backlog)."""
        self._report_state(self._reprice(), lag)

    def _count_events(
        self, valid: list[tuple[RawMessage, EngagementEvent]], rejected: list[DlqRecord]
    ) -> None:
        if self._metrics is None:
            return
        self._metrics.batch_size.observe(len(valid) + len(rejected))
        for _, event in valid:
            self._metrics.events.labels(event_type=str(event.event_type)).inc()
        for record in rejected:
            self._metrics.invalid.labels(reason=record.error_code).inc()

    def _report_state(self, spent: float, lag: int | None) -> None:
        """Budget, capacity and consumer lag gauges, after each batch."""
        if self._metrics is None:
            return
        self._metrics.budget_spent.set(spent)
        self._metrics.budget_remaining.set(max(self.ledger.budget - spent, 0.0))
        self._metrics.budget_target.set(self.pacing.target_spend(self._pacing_elapsed()))
        left = self._capacity_left()
        for index, name in enumerate(self.policy.catalog.names):
            if np.isfinite(left[index]):
                self._metrics.capacity_left.labels(action=name).set(left[index])
        if lag is not None:
            self._metrics.consumer_lag.set(lag)
        if time.monotonic() - self._checked_at >= _DEPENDENCY_CHECK_S:
            self._checked_at = time.monotonic()
            for dependency, answered in self.dependencies_answer().items():
                self._metrics.dependency_up.labels(dependency=dependency).set(
                    1.0 if answered else 0.0
                )

    def dependencies_answer(self) -> dict[str, bool]:
        """For /readyz: does the broker answer a metadata request, does Redis answer PING?"""
        try:
            broker = bool(self._producer.list_topics(timeout=2.0).brokers)
        except Exception:  # any failure means "not answering"
            broker = False
        try:
            cache = bool(self._redis.ping())
        except redis.RedisError:
            cache = False
        return {"kafka": broker, "redis": cache}

    def close(self) -> None:
        """Flush what is still pending."""
        self._producer.flush(30)

    def _last_triggers(self, customers: set[str]) -> dict[str, tuple[float, str]]:
        """Each customer's last trigger (event time, event_id), kept in Redis for every worker."""
        if not customers:
            return {}
        ordered = sorted(customers)
        found: list[bytes | None] = self._redis.hmget(self._trigger_key, ordered)  # type: ignore[assignment]  # sync client
        last = {}
        for customer, value in zip(ordered, found, strict=True):
            if value is not None:
                stamp, event_id = value.decode().split("|", 1)
                last[customer] = (float(stamp), event_id)
        return last

    def _remember_triggers(self, triggers: list[tuple[RawMessage, EngagementEvent]]) -> None:
        mapping = {e.customer_id: f"{e.occurred_at.timestamp()}|{e.event_id}" for _, e in triggers}
        self._redis.hset(self._trigger_key, mapping=mapping)

    def _pacing_elapsed(self) -> float:
        """Seconds into the budget period, on the wall clock (the period may have begun before
        this worker did: NBA_PACING_START)."""
        return time.time() - self._pacing_origin

    def _reprice(self) -> float:
        """Move the pacing price after a batch; returns the ledger's spend it read."""
        elapsed = self._pacing_elapsed()
        spent = self.ledger.spent()
        self.pacer = self.pacer.updated(self.pacing, spent, elapsed, step_s=1.0)
        return spent

    def _decide(
        self, triggers: list[tuple[RawMessage, EngagementEvent]], stats: BatchStats
    ) -> None:
        ids = [
            action_id_for(
                Trigger(topic=r.topic, partition=r.partition, offset=r.offset, event_id=e.event_id),
                self.policy.version,
            )
            for r, e in triggers
        ]
        keys = [f"nba:decision:{i}" for i in ids]
        stored: list[bytes | None] = self._redis.mget(keys)  # type: ignore[assignment]  # sync client
        fresh = [t for t, s in zip(triggers, stored, strict=True) if s is None]
        for (raw, event), payload in zip(triggers, stored, strict=True):
            if payload is not None:  # a replay: publish exactly what was decided before
                self._publish(raw, payload, stats)
                self._contacted(event, json.loads(payload)["channel"])
                stats.republished += 1
        if not fresh:
            return
        customers = [e.customer_id for _, e in fresh]
        event_ids = [e.event_id for _, e in fresh]
        elapsed = self._pacing_elapsed()
        allowance = self.pacer.allowance(self.pacing, self.ledger.spent(), elapsed)
        with self._timed("score"), self._counting_errors("feature_store_or_model"):
            scores = self._scores(customers, event_ids)
        with self._timed("policy"):
            decisions = decide_stream(
                scores,
                self._contact_state(fresh),
                self.policy,
                self.pacer,
                allowance,
                self._capacity_left(),
            )
        actions = build_actions(
            decisions,
            fresh,
            self.policy.catalog,
            self._announce_versions(),  # the version that scored this batch
            self.settings.budget_period,
            datetime.now(UTC),
        )
        with self._timed("ledger_and_publish"):
            published = self._reserve_and_publish(fresh, actions, decisions, stats)
        for action, (_, event) in zip(published, fresh, strict=True):
            self._contacted(event, action.channel)

    def _contacted(self, trigger: EngagementEvent, channel: str) -> None:
        """A contact to record once the batch is delivered (a refused one never happened)."""
        if channel != "none":
            self._contacts_pending.append(
                (trigger.customer_id, channel, trigger.occurred_at.timestamp())
            )

    def _contact_state(self, fresh: list[tuple[RawMessage, EngagementEvent]]) -> ContactState:
        """Consent from the features; contact history (as of each trigger) from the log."""
        customers = [e.customer_id for _, e in fresh]
        state = self._contacts(customers)
        if self._contact_log is None:
            return state
        return self._contact_log.apply(
            state, customers, [e.occurred_at.timestamp() for _, e in fresh]
        )

    def _reserve_and_publish(
        self,
        fresh: list[tuple[RawMessage, EngagementEvent]],
        actions: list[NbaAction],
        decisions: Decisions,
        stats: BatchStats,
    ) -> list[NbaAction]:
        published = []
        for (raw, _), action, index in zip(fresh, actions, range(len(fresh)), strict=True):
            final = self._reserve(
                action, int(decisions.action[index]), float(decisions.cost[index])
            )
            payload = final.model_dump_json().encode()
            self._redis.set(f"nba:decision:{final.action_id}", payload, ex=_DECISION_TTL_S, nx=True)
            self._publish(raw, payload, stats, new_action=final.action_id)
            published.append(final)
            stats.decided += 1
            if self._metrics is not None:
                self._metrics.decisions.labels(
                    action=final.action, arm=final.arm, segment=final.segment
                ).inc()
        return published

    def _capacity_left(self) -> NDArray[np.float64]:
        """Capacity per action minus what the ledger counted this period (every worker's)."""
        counts = self.ledger.counts()
        used = np.array([counts.get(name, 0) for name in self.policy.catalog.names], float)
        left: NDArray[np.float64] = np.maximum(self._capacity - used, 0.0)
        return left

    def _reserve(self, action: NbaAction, index: int, cost: float) -> NbaAction:
        if index == DO_NOTHING:
            return action
        reservation = self.ledger.reserve(
            action.action_id, action.action, cost, float(self._capacity[index])
        )
        if reservation.granted:
            return action
        return action.model_copy(
            update={
                "action": "do_nothing",
                "channel": "none",
                "cost": 0.0,
                "expected_value": 0.0,
                "uplift": 0.0,
                "reasons": [*action.reasons, f"ledger:{reservation.reason}"],
                "explanation": (
                    f"{action.explanation.split(',')[0]}, "
                    f"no action: the ledger refused ({reservation.reason})"
                ),
            }
        )

    def _publish(
        self, raw: RawMessage, payload: bytes, stats: BatchStats, new_action: str | None = None
    ) -> None:
        """``new_action``: the id of a decision published for the first time (a failed delivery
        undoes it); a replayed decision may already be with the CRM and is never undone."""
        customer = json.loads(payload)["customer_id"]
        self._producer.produce(
            self.settings.actions_topic,
            key=customer.encode(),
            value=payload,
            on_delivery=self._on_delivery(new_action),
        )
        if raw.timestamp_ms > 0:
            latency_ms = time.time() * 1000.0 - raw.timestamp_ms
            stats.latencies_ms.append(latency_ms)
            if self._metrics is not None:
                self._metrics.decision_latency.observe(latency_ms / 1000.0)

    def _on_delivery(self, new_action: str | None) -> Callable[[KafkaError | None, Message], None]:
        def delivered(error: KafkaError | None, _: Message) -> None:
            if error is not None:
                self._undelivered.append((new_action, error))

        return delivered

    @contextmanager
    def _counting_errors(self, component: str) -> Iterator[None]:
        """Count a dependency's failure for the alert rules, then let it stop the batch: its
        offsets stay uncommitted, so the events are decided again once the dependency is back."""
        try:
            yield
        except Exception:
            if self._metrics is not None:
                self._metrics.errors.labels(component=component).inc()
            raise

    @contextmanager
    def _timed(self, step: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            if self._metrics is not None:
                self._metrics.step_seconds.labels(step=step).observe(time.perf_counter() - started)


def latency_percentiles(latencies_ms: Sequence[float]) -> tuple[float, float]:
    if not latencies_ms:
        return 0.0, 0.0
    p50, p99 = np.percentile(np.asarray(latencies_ms), [50, 99])
    return float(p50), float(p99)
