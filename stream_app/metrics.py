"""Every Prometheus metric the engine exports, in one place (names prefixed `nba_`, ending in
their unit). Latency buckets are in seconds but chosen for milliseconds, where decisions live.
Pass a ``CollectorRegistry`` to keep tests and several engines in one process apart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

__all__ = ["LATENCY_BUCKETS", "EngineMetrics", "counting_errors", "timed"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 5000)


@dataclass(frozen=True)
class EngineMetrics:
    events: Counter
    invalid: Counter
    decisions: Counter
    decision_latency: Histogram
    step_seconds: Histogram
    batch_size: Histogram
    budget_spent: Gauge
    budget_remaining: Gauge
    budget_target: Gauge
    errors: Counter
    dependency_up: Gauge
    capacity_left: Gauge
    consumer_lag: Gauge
    last_batch: Gauge
    versions: Info
    feature_psi: Gauge
    score_psi: Gauge
    model_reloads: Counter
    outcomes: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> EngineMetrics:
        return cls(
            events=Counter(
                "nba_events_total",
                "Valid engagement events consumed, by type.",
                ["event_type"],
                registry=registry,
            ),
            invalid=Counter(
                "nba_events_invalid_total",
                "Events sent to the DLQ, by reason.",
                ["reason"],
                registry=registry,
            ),
            decisions=Counter(
                "nba_decisions_total",
                "Decisions published.",
                ["action", "arm", "segment"],
                registry=registry,
            ),
            decision_latency=Histogram(
                "nba_decision_latency_seconds",
                "From the event's Kafka timestamp to the decision's publish.",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            step_seconds=Histogram(
                "nba_step_seconds",
                "Time per micro-batch step.",
                ["step"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            batch_size=Histogram(
                "nba_batch_size_events",
                "Events per micro-batch.",
                buckets=BATCH_BUCKETS,
                registry=registry,
            ),
            budget_spent=Gauge(
                "nba_budget_spent_dollars",
                "Reserved spend in the current period.",
                registry=registry,
            ),
            budget_remaining=Gauge(
                "nba_budget_remaining_dollars",
                "Budget left in the current period.",
                registry=registry,
            ),
            budget_target=Gauge(
                "nba_budget_target_dollars",
                "Spend the pacing curve asks for by now.",
                registry=registry,
            ),
            errors=Counter(
                "nba_errors_total",
                "Failures talking to a dependency, by component.",
                ["component"],
                registry=registry,
            ),
            dependency_up=Gauge(
                "nba_dependency_up",
                "1 when the dependency answered the last check (every 10 s), else 0.",
                ["dependency"],
                registry=registry,
            ),
            capacity_left=Gauge(
                "nba_capacity_left_actions",
                "Capacity left per capped action.",
                ["action"],
                registry=registry,
            ),
            consumer_lag=Gauge(
                "nba_consumer_lag_messages",
                "Messages not yet consumed on the assigned partitions.",
                registry=registry,
            ),
            last_batch=Gauge(
                "nba_last_batch_timestamp_seconds",
                "When this worker last completed a micro-batch (unix time; 0: not yet).",
                registry=registry,
            ),
            versions=Info(
                "nba_engine", "Model and policy versions this worker serves.", registry=registry
            ),
            feature_psi=Gauge(
                "nba_feature_psi",
                "Population stability index of a feature, recent traffic vs training data.",
                ["feature"],
                registry=registry,
            ),
            score_psi=Gauge(
                "nba_score_psi",
                "Population stability index of a model score, recent traffic vs training data.",
                ["score"],
                registry=registry,
            ),
            model_reloads=Counter(
                "nba_model_reloads_total",
                "Changes of the promoted model picked up without a restart, by result.",
                ["result"],
                registry=registry,
            ),
            outcomes=Counter(
                "nba_outcomes_total",
                "Realized outcomes joined to their decision (arm 'unmatched': unknown action).",
                ["arm", "action", "outcome_type"],
                registry=registry,
            ),
        )


@contextmanager
def timed(metrics: EngineMetrics | None, step: str) -> Iterator[None]:
    """Observe the block's duration as ``nba_step_seconds{step}``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        if metrics is not None:
            metrics.step_seconds.labels(step=step).observe(time.perf_counter() - started)


@contextmanager
def counting_errors(metrics: EngineMetrics | None, component: str) -> Iterator[None]:
    """Count a dependency's failure for the alert rules, then let it stop the batch: its
    offsets stay uncommitted, so the events are decided again once the dependency is back."""
    try:
        yield
    except Exception:
        if metrics is not None:
            metrics.errors.labels(component=component).inc()
        raise
