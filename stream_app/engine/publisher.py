"""Reserve and publish: each new decision's spend is reserved in the Redis ledger (a refusal
turns it into do_nothing with a `ledger:` reason), stored by action_id, and produced to the
actions topic inside the caller's Kafka transaction. ``seal`` closes the batch into a
``BatchRecord``; once its transaction is committed, ``committed`` marks its decisions delivered
and records its contacts; an aborted one (``abandoned``) leaves both to the batch's next try,
which republishes the stored decisions. While a sealed batch's transaction commits, the next
batch may be decided: ``in_flight`` lets its contacts count for that batch already."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from confluent_kafka import Producer

from policies.allocation import DO_NOTHING
from policies.decide import Decisions
from stream_app.contacts import ContactLog
from stream_app.engine.intake import ValidEvents
from stream_app.engine.state import DecisionState
from stream_app.ledger import BudgetLedger, Reservation
from stream_app.messages import ACTIONS_SCHEMA_VERSION, EngagementEvent, NbaAction
from stream_app.metrics import EngineMetrics
from stream_app.pipeline import RawMessage

__all__ = ["BatchRecord", "Publisher"]

_PAID = DO_NOTHING + 1  # any action index but do_nothing's: _reserve asks the ledger


@dataclass(frozen=True)
class BatchRecord:
    """What a batch's commit makes true: its action messages (ids), the HTTP requests another
    decision answered, its contacts (customer, channel, epoch s)."""

    produced: tuple[str, ...] = ()
    superseded: tuple[str, ...] = ()
    contacts: tuple[tuple[str, str, float], ...] = ()


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
        self._contacts_pending: list[tuple[str, str, float]] = []
        self._produced: list[str] = []  # action_ids of the batch's records
        self._superseded: list[str] = []  # requests of the batch answered by another decision
        self._latencies_ms: list[float] = []

    def republish(
        self, raw: RawMessage, event: EngagementEvent, payload: bytes, capacity: float
    ) -> None:
        """A trigger decided before whose decision no reader has yet: publish exactly what was
        decided (an aborted transaction's decision, or one whose commit is not known).

        Its reservation is asked for again (a no-op when the ledger holds it): a FLUSHALL
        between the reservation and the decision's store leaves a stored decision whose spend
        a ledger rebuilt from the topic does not know. Refused now, the decision becomes
        do_nothing, stored in its place (no reader has seen the first one)."""
        stored = NbaAction.model_validate_json(payload)
        if stored.action != "do_nothing":
            final = self._reserve(stored, _PAID, stored.cost, capacity)
            if final is not stored:
                payload = final.model_dump_json().encode()
                self._state.replace_decision(final.action_id, payload)
        self._publish(raw, payload)
        self._contacted(event, json.loads(payload)["channel"])

    def reserve_and_publish(
        self,
        fresh: ValidEvents,
        actions: list[NbaAction],
        decisions: Decisions,
        capacity: list[float],
    ) -> list[NbaAction]:
        """Each new decision reserved, stored and produced; returns what was published.
        The batch's reservations take one Redis round trip and its stores another (a retry
        after a failure in between finds its reservations, and its stores are first-write-wins).
        """
        chosen = [int(a) for a in decisions.action[: len(actions)]]
        paid = [
            (action, float(decisions.cost[i]), capacity[chosen[i]])
            for i, action in enumerate(actions)
            if chosen[i] != DO_NOTHING
        ]
        answers = iter(
            self._ledger.reserve_many([(a.action_id, a.action, c, cap) for a, c, cap in paid])
        )
        finals = [
            action if chosen[i] == DO_NOTHING else _refused_if(action, next(answers))
            for i, action in enumerate(actions)
        ]
        payloads = [final.model_dump_json().encode() for final in finals]
        self._state.store_decisions(
            [(f.action_id, p, f.customer_id) for f, p in zip(finals, payloads, strict=True)]
        )
        for (raw, event), final, payload in zip(fresh, finals, payloads, strict=True):
            self._publish(raw, payload)
            self._contacted(event, final.channel)
            if self._metrics is not None:
                self._metrics.decisions.labels(
                    action=final.action, arm=final.arm, segment=final.segment
                ).inc()
        return finals

    def seal(self) -> BatchRecord:
        """The open batch's record; the next batch starts empty."""
        record = BatchRecord(
            tuple(self._produced), tuple(self._superseded), tuple(self._contacts_pending)
        )
        self.discard()
        return record

    def discard(self) -> None:
        """The open batch will not be committed (it failed before its transaction)."""
        self._produced = []
        self._superseded = []
        self._contacts_pending = []

    def in_flight(self, record: BatchRecord) -> None:
        """``record``'s transaction is committing: its contacts count for the next batch."""
        if self._contact_log is not None:
            self._contact_log.hold(record.contacts)

    def committed(self, record: BatchRecord) -> None:
        """The batch's transaction is committed: its decisions are on the topic for every
        read_committed reader (a re-sent trigger then publishes nothing), and its contacts
        happened. Both writes are idempotent: a retry after a Redis error repeats them."""
        self._state.mark_delivered(list(record.produced), record.superseded)
        if self._contact_log is not None:
            self._contact_log.record(record.contacts)
            self._contact_log.release()

    def abandoned(self) -> None:
        """The sealed batch's transaction was aborted: nothing of it reached a reader, and its
        held contacts never happened (its stored decisions: the batch's next try republishes
        them)."""
        if self._contact_log is not None:
            self._contact_log.release()

    def superseded(self, action_ids: list[str]) -> None:
        """HTTP requests of the batch that another decision answers (announced on commit)."""
        self._superseded.extend(action_ids)

    def take_latencies(self) -> list[float]:
        """Event time to publish, in ms, of every record produced since the last call."""
        taken, self._latencies_ms = self._latencies_ms, []
        return taken

    def close(self) -> None:
        """Deliver what a transactional producer may still hold outside a transaction."""
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
        return _refused_if(action, reservation)

    def _contacted(self, trigger: EngagementEvent, channel: str) -> None:
        """A contact to record once the batch is committed (an aborted one never happened)."""
        if channel != "none":
            self._contacts_pending.append(
                (trigger.customer_id, channel, trigger.occurred_at.timestamp())
            )

    def _publish(self, raw: RawMessage, payload: bytes) -> None:
        sent = json.loads(payload)
        self._produced.append(sent["action_id"])
        self._producer.produce(
            self._topic,
            key=sent["customer_id"].encode(),
            value=payload,
            headers=[("schema-version", ACTIONS_SCHEMA_VERSION.encode())],
        )
        if raw.timestamp_ms > 0:
            latency_ms = time.time() * 1000.0 - raw.timestamp_ms
            self._latencies_ms.append(latency_ms)
            if self._metrics is not None:
                self._metrics.decision_latency.observe(latency_ms / 1000.0)


def _refused_if(action: NbaAction, reservation: Reservation) -> NbaAction:
    """The action as decided when the ledger granted it, else do_nothing with the reason."""
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
