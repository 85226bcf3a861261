"""Waiting out an outage of Kafka or Redis inside a worker, instead of ending it.

A batch that fails because a dependency does not answer (a Redis error or timeout, a broker
that does not take the batch's records) is tried again with exponential backoff and jitter
(tenacity), for up to ``NBA_MAX_OUTAGE_S``; only then does the worker exit. Meanwhile nothing
of the batch is committed, the consumer holds its position, the lag gauge is refreshed at each
wait, and ``/readyz`` (refreshed by its own timer) says which dependency is down. Any other
error is a bug, not an outage, and ends the worker at once (its batch uncommitted).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from confluent_kafka import KafkaError, KafkaException
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    stop_when_event_set,
    wait_exponential_jitter,
)

from stream_app.ledger import LedgerLost
from stream_app.metrics import EngineMetrics

__all__ = [
    "DEPENDENCY_ERRORS",
    "OutageWaiter",
    "component_of",
    "is_outage",
    "wait_out_at_start",
]

DEPENDENCY_ERRORS: tuple[type[Exception], ...] = (
    redis.RedisError,
    KafkaException,
    LedgerLost,  # rebuilt before the retry (stream_app.decision_loop)
)
_LOG = logging.getLogger("nba.worker.outage")
T = TypeVar("T")


# A producer fenced by a newer one with its transactional.id: two workers share an id.
_FENCED = frozenset({KafkaError._FENCED, KafkaError.PRODUCER_FENCED})


def is_outage(error: BaseException) -> bool:
    """A dependency that does not answer, or answers "try again" (other fatal producer errors
    included: the decide loop replaces the producer); not a fenced producer."""
    if isinstance(error, KafkaException) and error.args:
        first = error.args[0]
        return not (isinstance(first, KafkaError) and first.code() in _FENCED)
    return isinstance(error, DEPENDENCY_ERRORS)


def component_of(error: BaseException | None) -> str:
    return "redis" if isinstance(error, redis.RedisError | LedgerLost) else "kafka"


class OutageWaiter:
    def __init__(
        self,
        max_outage_s: float,
        metrics: EngineMetrics | None = None,
        on_wait: Callable[[], None] | None = None,
        max_wait_s: float = 15.0,
        interrupt: threading.Event | None = None,
    ) -> None:
        """``on_wait``: called before each wait (the worker refreshes its lag gauge);
        ``interrupt``: once set, a wait ends at once and the last error is raised (a stop)."""
        self._max_outage_s = max_outage_s
        self._metrics = metrics
        self._on_wait = on_wait
        self._max_wait_s = max_wait_s
        self._interrupt = interrupt

    async def until_done(self, step: Callable[[], T], agent: str) -> T:
        """``step()`` once it succeeds; its last error after NBA_MAX_OUTAGE_S of failures."""
        started = time.monotonic()
        results: list[T] = []
        async for attempt in AsyncRetrying(**self._policy(agent)):
            with attempt:
                results.append(step())
        self._recovered(agent, started, attempt.retry_state.attempt_number)
        return results[-1]

    def run(self, step: Callable[[], T], agent: str) -> T:
        """The same, blocking the calling thread while it waits."""
        started = time.monotonic()
        results: list[T] = []
        for attempt in Retrying(**self._policy(agent)):
            with attempt:
                results.append(step())
        self._recovered(agent, started, attempt.retry_state.attempt_number)
        return results[-1]

    def _policy(self, agent: str) -> dict[str, Any]:
        policy: dict[str, Any] = {
            "retry": retry_if_exception(is_outage),
            "wait": wait_exponential_jitter(initial=0.2, max=self._max_wait_s),
            "stop": stop_after_delay(self._max_outage_s),
            "before_sleep": lambda state: self._waiting(state, agent),
            "reraise": True,
        }
        if self._interrupt is not None:
            policy["stop"] = policy["stop"] | stop_when_event_set(self._interrupt)
            policy["sleep"] = self._interrupt.wait
        return policy

    @staticmethod
    def _recovered(agent: str, started: float, attempts: int) -> None:
        # A step that was only slow (attempts == 1) had no outage to recover from.
        waited = time.monotonic() - started
        if attempts > 1 and waited > 1.0:
            _LOG.warning(
                "agent %s: dependencies answer again; the batch went through after %.1f s",
                agent,
                waited,
            )

    def _waiting(self, state: RetryCallState, agent: str) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        component = component_of(error)
        if self._metrics is not None:
            self._metrics.errors.labels(component=component).inc()
        if self._on_wait is not None:
            self._on_wait()
        pause = state.next_action.sleep if state.next_action is not None else 0.0
        _LOG.warning(
            "agent %s: %s unavailable (%s); batch held uncommitted, retry %d in %.1f s "
            "(waited %.0f of %.0f s, NBA_MAX_OUTAGE_S)",
            agent,
            component,
            error,
            state.attempt_number,
            pause,
            state.seconds_since_start or 0.0,
            self._max_outage_s,
        )


def wait_out_at_start(step: Callable[[], T], what: str, max_outage_s: float) -> T:
    """``step()`` during a worker's start (no event loop yet), waiting out the same outages as
    a batch: a broker or Redis that is away, or a topic whose leader is not elected yet."""
    results: list[T] = []

    def waiting(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        _LOG.warning(
            "start: %s: %s unavailable (%s); retry %d",
            what,
            component_of(error),
            error,
            state.attempt_number,
        )

    for attempt in Retrying(
        retry=retry_if_exception(is_outage),
        wait=wait_exponential_jitter(initial=0.2, max=15.0),
        stop=stop_after_delay(max_outage_s),
        before_sleep=waiting,
        reraise=True,
    ):
        with attempt:
            results.append(step())
    return results[-1]
