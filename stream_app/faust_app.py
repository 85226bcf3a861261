"""`nba worker`: the Faust app and the decide path, in one process.

- The **decide path** (stream_app.decision_loop) runs in a thread of the worker: it consumes
  the events topic with confluent-kafka as the consumer group NBA_CONSUMER_GROUP, and publishes
  each micro-batch's decisions and DLQ records in one Kafka transaction with the consumed
  offsets: a read_committed reader sees one action message per trigger. Its streaming
  aggregates live in Redis (stream_app.aggregates.ActivityStore).
- The **Faust app** (group NBA_CONSUMER_GROUP-feedback) runs the ``outcomes`` agent: it counts
  realized outcomes per arm and action, joined to the decision by action_id
  (stream_app.outcome_feed), at least once (stream_app.commit_guard).

Why the decide path left Faust's agent: Kafka transactions commit consumed offsets with the
group metadata of a confluent-kafka consumer (shared/STACK_NOTES.md), and faust-streaming's own
``exactly_once`` has open reports of duplicates after a kill (faust-streaming/faust#517) and of
crashes on rebalance (#323). Measured before the move, the at-least-once Faust agent needed two
patches of Faust/aiokafka private attributes on the hot path (fetch wait, seek to committed) and
the commit guard; the decide path now needs none of them.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any, NoReturn

import faust
from faust.streams import Stream
from faust.types import EventT, StreamT

from policies.errors import ConfigError
from stream_app import kafka_clients
from stream_app.commit_guard import CommitGuard, LogProbe, check_faust_version
from stream_app.decision_loop import DecisionLoop
from stream_app.log_limits import limit_repeats
from stream_app.metrics import EngineMetrics
from stream_app.outage import OutageWaiter
from stream_app.outcome_feed import OutcomeFeed
from stream_app.settings import Settings

__all__ = ["EngineApp", "create_app"]

_OUTCOME_BATCH = 500
_LOG = logging.getLogger("nba.worker")

limit_repeats()


def _rewind_uncommitted(consumer: Any, sources: frozenset[str]) -> None:
    """Read a source partition that has no committed offset from its beginning, always.

    Seen in the kill -9 test with faust-streaming 0.15.3 / aiokafka: when a rebalance hands a
    worker a partition the group never committed (its previous owner died first), aiokafka
    resets it to the earliest offset and prefetches it while Faust still holds the flow for
    table recovery; Faust then "seeks to committed", which for no committed offset (or 0)
    does nothing, so consumption resumes after the discarded prefetch, at the partition's end:
    those events were never processed, with nothing logged. Seeking such partitions to 0
    makes the restart point explicit (past the log start, the earliest-reset policy applies).
    Changelog partitions are left to Faust's recovery."""
    original = consumer.seek_to_committed

    async def seek_to_committed() -> Any:
        committed = await original()
        for tp, offset in committed.items():
            if tp.topic in sources and not offset:
                await consumer.seek(tp, 0)
        return committed

    consumer.seek_to_committed = seek_to_committed


def _broker_options(settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "broker": [f"kafka://{h.strip()}" for h in settings.effective_kafka_bootstrap().split(",")],
        "broker_session_timeout": settings.kafka_session_timeout_ms / 1000,
        "broker_heartbeat_interval": settings.kafka_heartbeat_interval_ms / 1000,
    }
    if settings.kafka_sasl_mechanism:
        password = settings.kafka_sasl_password
        options["broker_credentials"] = faust.SASLCredentials(
            username=settings.kafka_sasl_username or "",
            password=password.get_secret_value() if password else "",
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=_ssl_context(settings),
        )
    elif settings.kafka_security_protocol.upper() == "SSL":
        options["broker_credentials"] = faust.SSLCredentials(_ssl_context(settings))
    return options


def _ssl_context(settings: Settings) -> Any:
    if not settings.kafka_security_protocol.upper().endswith("SSL"):
        return None
    import ssl

    cafile = str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
    return ssl.create_default_context(cafile=cafile)


def _batches(
    stream: StreamT[bytes], size: int, within: float
) -> AsyncIterator[Sequence[EventT[bytes]]]:
    """``take_events``: Faust acknowledges a batch's events only when the next is asked for."""
    if not isinstance(stream, Stream):
        raise TypeError(f"a Faust Stream is needed, got {type(stream).__name__}")
    return stream.take_events(size, within=within)


def _die(agent: str) -> NoReturn:
    """A batch that cannot be processed (a bug, or a dependency down for longer than
    NBA_MAX_OUTAGE_S) ends the process at once.

    Faust acknowledges a batch's events when its iterator is closed, whatever happened to them,
    so leaving the outcomes loop by an exception would commit events that were never counted;
    the decide path's open transaction is aborted by the broker (or by the restarted worker).
    Exiting without running any clean-up leaves both uncommitted: the restarted worker (or
    another one of the group) processes them again."""
    _LOG.exception("agent %s: the batch failed; exiting without committing it", agent)
    logging.shutdown()
    sys.stderr.flush()
    os._exit(70)  # EX_SOFTWARE


class EngineApp:
    """The Faust app with its outcomes agent, and the decide loop's thread."""

    def __init__(
        self,
        settings: Settings,
        decide: DecisionLoop,
        outcome_feed: OutcomeFeed,
        metrics: EngineMetrics | None = None,
    ) -> None:
        check_faust_version()
        self.settings = settings
        self._metrics = metrics
        self.decide = decide
        self._stop = threading.Event()
        self._decide_waiter = OutageWaiter(
            settings.max_outage_s, metrics, on_wait=self._report_lag, interrupt=self._stop
        )
        self._outcome_waiter = OutageWaiter(settings.max_outage_s, metrics)
        datadir = settings.state_dir / "faust" / settings.consumer_group
        datadir.mkdir(parents=True, exist_ok=True)
        self.app = faust.App(
            f"{settings.consumer_group}-feedback",
            **_broker_options(settings),
            key_serializer="raw",
            value_serializer="raw",
            topic_partitions=settings.topic_partitions,
            topic_replication_factor=settings.topic_replication_factor,
            store="memory://",
            datadir=str(datadir),
            consumer_auto_offset_reset="earliest",
            processing_guarantee="at_least_once",
            web_enabled=False,
            autodiscover=False,
        )
        sources = frozenset({settings.topic_outcomes})
        _rewind_uncommitted(self.app.consumer, sources)
        self._probe = LogProbe(kafka_clients.consumer(settings, f"{settings.consumer_group}-probe"))
        self._commits = CommitGuard(self.app.consumer, sources, self._probe)
        self._outcomes = outcome_feed
        outcomes = self.app.topic(settings.topic_outcomes)
        self.app.agent(outcomes, name="outcomes")(self._count_outcomes)

    @property
    def consumed(self) -> int:
        return self.decide.consumed

    def _decide_until_stopped(self) -> None:
        try:
            self.decide.run_until(self._stop, self._decide_waiter)
        except Exception:
            if not self._stop.is_set():
                _die("decide")
            _LOG.warning("decide: stopped during an outage; the batch stays uncommitted")

    def _report_lag(self) -> None:
        if self._metrics is not None:
            self._metrics.consumer_lag.set(self.decide.lag())

    async def _count_outcomes(self, stream: StreamT[bytes]) -> None:
        async for batch in _batches(stream, _OUTCOME_BATCH, 1.0):
            count = functools.partial(self._outcomes.count, [e.message.value for e in batch])
            try:
                await self._outcome_waiter.until_done(count, "outcomes")
            except Exception:
                _die("outcomes")
            self._commits.record(batch)

    def run(self) -> None:
        """Run until SIGTERM or SIGINT: Faust's worker handles both; then the decide thread
        finishes its batch, commits it, and leaves the consumer group."""
        decide = threading.Thread(target=self._decide_until_stopped, name="nba-decide")
        decide.start()
        worker = faust.Worker(
            self.app, loglevel=self.settings.log_level, quiet=True, redirect_stdouts=False
        )
        worker.spinner = None  # its terminal escapes would land in log files
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise RuntimeError(f"the Faust worker stopped with exit code {exc.code}") from None
        finally:
            self._stop.set()
            decide.join()
            self.decide.close()
            self._probe.close()


def _partitions(settings: Settings, topic: str) -> int:
    """How many partitions the topic has on the broker (a missing topic is a setup error)."""
    count = kafka_clients.partition_count(kafka_clients.admin(settings), topic)
    if count is None:
        raise ConfigError(
            f"events topic {topic!r} does not exist on the broker (NBA_TOPIC_EVENTS); create it "
            "with as many partitions as workers you may run"
        )
    return count


def create_app(settings: Settings, metrics: EngineMetrics | None = None) -> EngineApp:
    """The worker's Faust app and decide loop for these settings (what `nba worker` serves)."""
    from stream_app.redis_clients import redis_client
    from stream_app.worker import decision_loop

    _partitions(settings, settings.topic_events)
    client = redis_client(settings)
    return EngineApp(
        settings,
        decision_loop(settings, metrics),
        OutcomeFeed(client, settings.topic_outcomes, metrics),
        metrics,
    )
