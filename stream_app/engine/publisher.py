"""Reserve and publish: each new decision's spend is reserved in the Redis ledger (a refusal
turns it into do_nothing with a `ledger:` reason), stored by action_id, and produced to the
actions topic; ``flush`` waits for the broker, undoes what it refused, and only then records the
batch's contacts. The caller commits the consumed offsets only after a successful flush."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from confluent_kafka import KafkaError, Message, Producer

from policies.allocation import DO_NOTHING
from policies.decide import Decisions
from stream_app.contacts import ContactLog
from stream_app.engine.intake import ValidEvents
from stream_app.engine.state import DecisionState
from stream_app.ledger import BudgetLedger
from stream_app.messages import EngagementEvent, NbaAction
from stream_app.metrics import EngineMetrics
from stream_app.pipeline import RawMessage

__all__ = ["DeliveryError", "Publisher"]

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


_FLUSH_TIMEOUT_S = 10.0


class DeliveryError(RuntimeError):
    """The broker did not take every record of the batch: its offsets must stay uncommitted.

    ``still_queued``: nothing failed, some records are still waiting in the producer (the
    broker is away): flushing again later completes the batch. Otherwise some records failed:
    the batch must be processed again (its stored decisions are republished, the refused ones
    decided afresh)."""

    def __init__(self, message: str, *, still_queued: bool) -> None:
        super().__init__(message)
        self.still_queued = still_queued


class Publisher:
    def __init__(
        self,
        *,
        producer: Producer,
        actions_topic: str,
        state: DecisionState,
        ledger: BudgetLedger,
        contact_log: ContactLog | None = None,
        metrics: EngineMetrics | None = None,
    ) -> None:
        self._producer = producer
        self._topic = actions_topic
        self._state = state
        self._ledger = ledger
        self._contact_log = contact_log
        self._metrics = metrics
        self._undelivered: list[tuple[str | None, KafkaError]] = []
        self._contacts_pending: list[tuple[str, str, float]] = []
        self._produced: list[str] = []  # action_ids of the batch's records
        self._latencies_ms: list[float] = []

    def republish(self, raw: RawMessage, event: EngagementEvent, payload: bytes) -> None:
        """A replayed trigger: publish exactly what was decided before (never undone: it may
        already be with the CRM)."""
        self._publish(raw, payload, new_action=None)
        self._contacted(event, json.loads(payload)["channel"])

    def reserve_and_publish(
        self,
        fresh: ValidEvents,
        actions: list[NbaAction],
        decisions: Decisions,
        capacity: list[float],
    ) -> list[NbaAction]:
        """Each new decision reserved, stored and produced; returns what was published."""
        published = []
        for index, ((raw, event), action) in enumerate(zip(fresh, actions, strict=True)):
            chosen = int(decisions.action[index])
            final = self._reserve(action, chosen, float(decisions.cost[index]), capacity[chosen])
            payload = final.model_dump_json().encode()
            self._state.store_decision(final.action_id, payload)
            self._publish(raw, payload, new_action=final.action_id)
            self._contacted(event, final.channel)
            published.append(final)
            if self._metrics is not None:
                self._metrics.decisions.labels(
                    action=final.action, arm=final.arm, segment=final.segment
                ).inc()
        return published

    def flush(self) -> None:
        """Wait until every record of the batch is on the broker; only then may offsets move.

        A new decision whose record the broker refused is undone: its reservation released and
        its stored decision dropped, so the replay of its trigger decides and reserves afresh.
        Either way the batch fails (DeliveryError) and its offsets stay uncommitted. The batch's
        contacts enter the contact history only once delivered."""
        pending = self._producer.flush(_FLUSH_TIMEOUT_S)
        undelivered, self._undelivered = self._undelivered, []
        if undelivered:
            refused = [
                action_id
                for action_id, error in undelivered
                if action_id is not None and error.code() not in _MAYBE_WRITTEN
            ]
            for action_id in refused:
                self._ledger.release(action_id)
                self._state.forget_decision(action_id)
            self._contacts_pending = []  # processed again, the batch records them again
            self._produced = []
            raise DeliveryError(
                f"kafka: {pending + len(undelivered)} decision(s) not delivered "
                f"({undelivered[0][1].str()}); {len(refused)} reservation(s) released; "
                "offsets stay uncommitted",
                still_queued=False,
            )
        if pending:
            raise DeliveryError(
                f"kafka: {pending} record(s) still queued after {_FLUSH_TIMEOUT_S:.0f} s (the "
                "broker does not answer); offsets stay uncommitted",
                still_queued=True,
            )
        self._state.mark_delivered(self._produced)  # a retried flush marks them again
        self._produced = []
        if self._contact_log is not None:  # idempotent: a retried flush records them again
            self._contact_log.record(self._contacts_pending)
        self._contacts_pending = []

    def take_latencies(self) -> list[float]:
        """Event time to publish, in ms, of every record produced since the last call."""
        taken, self._latencies_ms = self._latencies_ms, []
        return taken

    def close(self) -> None:
        """Flush what is still pending."""
        self._producer.flush(30)

    def broker_answers(self) -> bool:
        """Does the broker answer a metadata request?"""
        try:
            return bool(self._producer.list_topics(timeout=1.0).brokers)
        except Exception:  # any failure means "not answering"
            return False

    def _reserve(self, action: NbaAction, index: int, cost: float, capacity: float) -> NbaAction:
        if index == DO_NOTHING:
            return action
        reservation = self._ledger.reserve(action.action_id, action.action, cost, capacity)
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

    def _contacted(self, trigger: EngagementEvent, channel: str) -> None:
        """A contact to record once the batch is delivered (a refused one never happened)."""
        if channel != "none":
            self._contacts_pending.append(
                (trigger.customer_id, channel, trigger.occurred_at.timestamp())
            )

    def _publish(self, raw: RawMessage, payload: bytes, new_action: str | None) -> None:
        """``new_action``: the id of a decision published for the first time (a failed delivery
        undoes it); a replayed decision may already be with the CRM and is never undone."""
        sent = json.loads(payload)
        customer = sent["customer_id"]
        self._produced.append(sent["action_id"])
        self._producer.produce(
            self._topic,
            key=customer.encode(),
            value=payload,
            on_delivery=self._on_delivery(new_action),
        )
        if raw.timestamp_ms > 0:
            latency_ms = time.time() * 1000.0 - raw.timestamp_ms
            self._latencies_ms.append(latency_ms)
            if self._metrics is not None:
                self._metrics.decision_latency.observe(latency_ms / 1000.0)

    def _on_delivery(self, new_action: str | None) -> Callable[[KafkaError | None, Message], None]:
        def delivered(error: KafkaError | None, _: Message) -> None:
            if error is not None:
                self._undelivered.append((new_action, error))

        return delivered
