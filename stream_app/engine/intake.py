"""Validation and the DLQ: every raw record of a batch is either a valid event or a DLQ record
with a reason (``stream_app.pipeline.parse_events``); the DLQ records are produced here, in the
same producer as the batch's decisions, so they are flushed (and the batch committed) together."""

from __future__ import annotations

from confluent_kafka import Producer

from stream_app.messages import DlqRecord, EngagementEvent
from stream_app.metrics import EngineMetrics
from stream_app.pipeline import Limits, RawMessage, parse_events

__all__ = ["Intake", "ValidEvents"]

ValidEvents = list[tuple[RawMessage, EngagementEvent]]


class Intake:
    def __init__(
        self,
        *,
        producer: Producer,
        dlq_topic: str,
        limits: Limits,
        metrics: EngineMetrics | None = None,
    ) -> None:
        self._producer = producer
        self._dlq_topic = dlq_topic
        self._limits = limits
        self._metrics = metrics

    def accept(self, raws: list[RawMessage]) -> tuple[ValidEvents, list[DlqRecord]]:
        """The valid events, in order; the rejected records are on their way to the DLQ."""
        valid, rejected = parse_events(raws, self._limits)
        for record in rejected:
            self._producer.produce(self._dlq_topic, value=record.model_dump_json().encode())
        self._count(valid, rejected)
        return valid, rejected

    def _count(self, valid: ValidEvents, rejected: list[DlqRecord]) -> None:
        if self._metrics is None:
            return
        self._metrics.batch_size.observe(len(valid) + len(rejected))
        for _, event in valid:
            self._metrics.events.labels(event_type=str(event.event_type)).inc()
        for record in rejected:
            self._metrics.invalid.labels(reason=record.error_code).inc()
