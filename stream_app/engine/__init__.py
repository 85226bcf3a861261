"""The decision engine, by responsibility; each part is testable alone.

| module | owns |
|---|---|
| `intake.py` | validation of raw records; bad ones to the DLQ with a reason |
| `state.py` | Redis state every worker shares: last trigger per customer, decisions by action_id |
| `decider.py` | scores, consent, contact history, pacing, capacity -> `policies.decide_stream` |
| `publisher.py` | ledger reservation, publish in the caller's transaction; marks after commit |
| `core.py` | `DecisionEngine`: one micro-batch through the parts above, gauges, readiness |

`assemble` wires the parts from plain arguments (the worker and the in-process loop use it).
"""

from __future__ import annotations

from collections.abc import Callable

from confluent_kafka import Producer

from policies.decide import PolicyConfig
from policies.pacing import Pacer, PacingConfig
from stream_app.contacts import ContactLog
from stream_app.engine.core import (
    Annotate,
    BatchStats,
    CommittedOffset,
    DecisionEngine,
    LoopSettings,
    latency_percentiles,
)
from stream_app.engine.decider import ContactSource, Decider, ScoreSource
from stream_app.engine.intake import Intake, ValidEvents
from stream_app.engine.publisher import Publisher
from stream_app.engine.state import DecisionState
from stream_app.ledger import BudgetLedger
from stream_app.metrics import EngineMetrics
from stream_app.pipeline import Limits
from stream_app.redis_clients import RedisClient

__all__ = [
    "BatchStats",
    "CommittedOffset",
    "DecisionEngine",
    "Annotate",
    "LoopSettings",
    "assemble",
    "latency_percentiles",
]


def assemble(
    *,
    settings: LoopSettings,
    policy: PolicyConfig,
    scores: ScoreSource,
    contacts: ContactSource,
    producer: Producer,
    redis_client: RedisClient,
    ledger: BudgetLedger,
    pacing: PacingConfig,
    pacer: Pacer,
    metrics: EngineMetrics | None = None,
    model_version: Callable[[], str] | None = None,
    contact_log: ContactLog | None = None,
    aggregates: Callable[[ValidEvents], None] | None = None,
    annotate: Annotate | None = None,
) -> DecisionEngine:
    """The engine with its four parts sharing one producer, one Redis client and one ledger."""
    state = DecisionState(redis_client, settings.events_topic)
    return DecisionEngine(
        settings=settings,
        intake=Intake(
            producer=producer,
            dlq_topic=settings.dlq_topic,
            limits=Limits(settings.max_message_bytes, settings.max_future_s, settings.event_types),
            metrics=metrics,
        ),
        state=state,
        decider=Decider(
            policy=policy,
            scores=scores,
            contacts=contacts,
            ledger=ledger,
            pacing=pacing,
            pacer=pacer,
            pacing_start_s=settings.pacing_start_s,
            contact_log=contact_log,
            metrics=metrics,
        ),
        publisher=Publisher(
            producer=producer,
            actions_topic=settings.actions_topic,
            state=state,
            ledger=ledger,
            contact_log=contact_log,
            metrics=metrics,
        ),
        metrics=metrics,
        model_version=model_version,
        aggregates=aggregates,
        annotate=annotate,
    )
