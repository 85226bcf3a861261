"""Decisions over HTTP, through the workers (see the package's doc for why).

``DecisionGateway.decide``:

1. the Idempotency-Key (with the caller's key id) fixes the request's event_id, hence its
   action_id; a decision already stored under it is answered at once (a retry);
2. an unknown customer is refused (404) unless the request asks for a cold-start decision;
3. a customer decided less than the minimum interval ago is refused (409) with that decision:
   the worker would not decide again (the contact rule), so nothing would come;
4. a ``decision_requested`` event goes to the events topic (acknowledged by the broker), and the
   gateway waits until a worker has committed the decision (its delivered mark in Redis).

Waiting is one asyncio task for every request in flight: it asks Redis for the delivered marks
of all of them in one MGET every ``POLL_S``, so 500 requests/s cost Redis no more than one
poller does.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import redis
import redis.asyncio as aioredis
from confluent_kafka import KafkaError, Message, Producer

from stream_app.engine.state import DecisionState, decision_key, delivered_key
from stream_app.messages import DECISION_REQUESTED, EngagementEvent, action_id_for

__all__ = ["Decided", "DecisionGateway", "FeatureRead", "request_event_id"]

POLL_S = 0.002
SCHEMA_VERSION = b"1"  # of engagement-events (stream_app.pipeline.SUPPORTED_SCHEMA_VERSIONS)

# Features of customers as the engine reads them (FeatureStoreAdapter.read_batch): one row per
# customer, with ``cold_start`` true for a customer the online store does not know.
FeatureRead = Callable[[list[str]], pd.DataFrame]


def request_event_id(key_id: str, idempotency_key: str | None) -> str:
    """The event_id of a request: the same key id and Idempotency-Key give the same id (and so
    the same action_id); without an Idempotency-Key every request is new."""
    if idempotency_key is None:
        return f"api-{uuid.uuid4().hex}"
    digest = hashlib.sha256(f"{key_id}\x00{idempotency_key}".encode()).hexdigest()
    return f"api-{digest[:40]}"


@dataclass(frozen=True)
class Decided:
    """What ``decide`` found: ``status`` is created (decided now), replayed (decided before
    for this Idempotency-Key), pending (not decided within the wait), unknown_customer,
    too_soon (decided recently: ``decision`` is that one) or key_reused (the Idempotency-Key
    was used for another customer)."""

    status: str
    action_id: str
    decision: dict[str, Any] | None = None
    delivered: bool = False
    retry_after_s: float | None = None


class _DeliveryWaiter:
    """Futures resolved when their action_id's delivered mark appears in Redis."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client
        self._pending: dict[str, list[asyncio.Future[bytes]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def wait(self, action_id: str, timeout_s: float) -> bytes | None:
        """The stored decision once delivered, or None after ``timeout_s``."""
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(action_id, []).append(future)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll())
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            return None
        finally:
            waiting = self._pending.get(action_id, [])
            if future in waiting:
                waiting.remove(future)
            if not waiting:
                self._pending.pop(action_id, None)

    async def _poll(self) -> None:
        while self._pending:
            ids = list(self._pending)
            with contextlib.suppress(redis.RedisError):  # an outage: the requests time out
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.mget([delivered_key(i) for i in ids])
                    pipe.mget([decision_key(i) for i in ids])
                    delivered, payloads = await pipe.execute()
                for action_id, mark, payload in zip(ids, delivered, payloads, strict=True):
                    if mark is not None and payload is not None:
                        for future in self._pending.pop(action_id, []):
                            if not future.done():
                                future.set_result(payload)
            await asyncio.sleep(POLL_S)


class _Sender:
    """The events producer, polled by a thread of its own so that delivery reports reach the
    waiting requests (an idempotent producer: acks=all, no duplicates on its retries)."""

    def __init__(self, producer: Producer) -> None:
        self._producer = producer
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="nba-api-producer", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    async def send(self, topic: str, event: EngagementEvent) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def report(error: KafkaError | None, _: Message) -> None:
            def settle() -> None:
                if done.done():
                    return
                if error is None:
                    done.set_result(None)
                else:
                    done.set_exception(RuntimeError(f"the broker refused the event: {error}"))

            loop.call_soon_threadsafe(settle)

        self._producer.produce(
            topic,
            key=event.customer_id.encode(),
            value=event.model_dump_json().encode(),
            headers=[("schema-version", SCHEMA_VERSION)],
            on_delivery=report,
        )
        await done

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._producer.flush(10)


def _decoded(payload: bytes | None) -> dict[str, Any] | None:
    return None if payload is None else dict(json.loads(payload))


class DecisionGateway:
    """``state``: the engine's shared decisions (sync Redis, called from FastAPI's threadpool);
    ``aio``: an asyncio Redis client on the same server, for the waits."""

    def __init__(
        self,
        *,
        events_topic: str,
        min_interval_s: float,
        timeout_s: float,
        producer: Producer,
        state: DecisionState,
        aio: aioredis.Redis,
        features: FeatureRead,
    ) -> None:
        self.events_topic = events_topic
        self._min_interval_s = min_interval_s
        self._timeout_s = timeout_s
        self._sender = _Sender(producer)
        self._state = state
        self._waiter = _DeliveryWaiter(aio)
        self._aio = aio
        self._features = features

    async def decide(
        self,
        key_id: str,
        customer_id: str,
        idempotency_key: str | None,
        context: dict[str, Any],
        cold_start: bool,
    ) -> Decided:
        event_id = request_event_id(key_id, idempotency_key)
        action_id = action_id_for(self.events_topic, event_id)
        earlier = await self._earlier(action_id, customer_id)
        if earlier is not None:
            return earlier
        known = not bool((await asyncio.to_thread(self.features, customer_id))["cold_start"])
        if not known and not cold_start:
            return Decided("unknown_customer", action_id)
        recent = await asyncio.to_thread(self._recent, customer_id, event_id)
        if recent is not None:
            return recent
        event = EngagementEvent(
            event_id=event_id,
            customer_id=customer_id,
            event_type=DECISION_REQUESTED,
            occurred_at=datetime.now(UTC),
            properties=context,
        )
        await self._sender.send(self.events_topic, event)
        return await self._outcome(action_id, "created")

    async def _earlier(self, action_id: str, customer_id: str) -> Decided | None:
        """A retry: the decision stored under this action_id (waited for if not yet
        delivered), or a refusal when the key was used for another customer."""
        payload = await self._aio.get(decision_key(action_id))
        if payload is None:
            return None
        if json.loads(payload)["customer_id"] != customer_id:
            return Decided("key_reused", action_id)
        return await self._outcome(action_id, "replayed")

    async def _outcome(self, action_id: str, status: str) -> Decided:
        payload = await self._waiter.wait(action_id, self._timeout_s)
        if payload is None:
            return Decided("pending", action_id)
        return Decided(status, action_id, _decoded(payload), delivered=True)

    def _recent(self, customer_id: str, event_id: str) -> Decided | None:
        last = self._state.last_triggers({customer_id}).get(customer_id)
        if last is None or last[1] == event_id:
            return None
        age_s = time.time() - last[0]
        if age_s >= self._min_interval_s:
            return None
        payload, delivered = self._state.latest(customer_id)
        decision = _decoded(payload)
        action_id = decision["action_id"] if decision else ""
        wait_s = self._min_interval_s - age_s
        return Decided("too_soon", action_id, decision, delivered, retry_after_s=wait_s)

    def decision(self, action_id: str) -> tuple[dict[str, Any] | None, bool]:
        payload, delivered = self._state.lookup([action_id])[0]
        return _decoded(payload), delivered

    def latest(self, customer_id: str) -> tuple[dict[str, Any] | None, bool]:
        payload, delivered = self._state.latest(customer_id)
        return _decoded(payload), delivered

    def features(self, customer_id: str) -> dict[str, Any]:
        """The customer's feature row as the engine reads it (``cold_start`` when unknown)."""
        row = self._features([customer_id]).iloc[0]
        return {str(k): _plain(v) for k, v in row.items()}

    def answers(self) -> dict[str, bool]:
        return {"redis": self._state.answers()}

    def close(self) -> None:
        self._sender.close()


def _plain(value: Any) -> Any:
    """A JSON-ready scalar: numpy and pandas scalars unboxed, missing values as None."""
    if value is None or (not isinstance(value, str | bytes) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value
