"""The in-process driver of the decision engine on confluent-kafka: consume a micro-batch, let
the engine decide and publish, flush, and only then commit the consumed offsets.

`nba worker` runs the engine under Faust (stream_app.faust_app); this loop runs the same engine
inside one Python process, where a Faust worker cannot (it wants the main thread and its own
event loop): tests, benchmarks, and batch replays. No streaming aggregates here: those live in
the Faust worker's changelogged table.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, Message

from stream_app.engine import BatchStats, DecisionEngine, LoopSettings, assemble
from stream_app.pipeline import RawMessage

__all__ = ["BatchStats", "DecisionLoop", "LoopSettings", "raw_message"]


def raw_message(msg: Message) -> RawMessage:
    listed = msg.headers() or []
    pairs = listed.items() if isinstance(listed, dict) else listed
    headers = {str(k): v for k, v in pairs if isinstance(v, bytes)}
    return RawMessage(
        topic=msg.topic() or "",
        partition=msg.partition() or 0,
        offset=msg.offset() or 0,
        key=msg.key() if isinstance(msg.key(), bytes) else None,
        value=msg.value() if isinstance(msg.value(), bytes) else None,
        headers=headers,
        timestamp_ms=msg.timestamp()[1],
    )


class DecisionLoop:
    """``consumer`` (subscribed) feeds ``engine``, or the engine ``assemble`` builds from the
    other keyword arguments."""

    def __init__(
        self, *, consumer: Consumer, engine: DecisionEngine | None = None, **parts: Any
    ) -> None:
        self.engine = engine if engine is not None else assemble(**parts)
        self._consumer = consumer

    @property
    def ledger(self) -> Any:
        return self.engine.ledger

    @property
    def policy(self) -> Any:
        return self.engine.policy

    def run_once(self) -> BatchStats:
        settings = self.engine.settings
        messages = [
            m
            for m in self._consumer.consume(settings.batch_size, settings.batch_wait_s)
            if m.error() is None
        ]
        if not messages:
            self.engine.after_batch()
            return BatchStats()
        stats = self.engine.process([raw_message(m) for m in messages])
        self.engine.flush()
        self._consumer.commit(asynchronous=False)
        self.engine.after_batch(self._lag())
        return stats

    def _lag(self) -> int:
        lag = 0
        assigned = self._consumer.assignment()
        for position in self._consumer.position(assigned) if assigned else []:
            _, high = self._consumer.get_watermark_offsets(position, cached=True)
            if high >= 0 and position.offset >= 0:
                lag += max(high - position.offset, 0)
        return lag

    def dependencies_answer(self) -> dict[str, bool]:
        return self.engine.dependencies_answer()

    def close(self) -> None:
        """Flush what is pending and leave the consumer group cleanly (offsets are committed)."""
        self.engine.close()
        self._consumer.close()
