"""Decisions over HTTP, through the workers (see the package's doc for why).

``DecisionGateway.decide``:

1. the Idempotency-Key (with the caller's key id) fixes the request's event_id, hence its
   action_id; a decision already stored under it is answered at once (a retry);
2. an unknown customer is refused (404) unless the request asks for a cold-start decision;
3. a customer decided less than the minimum interval ago is refused (409) with that decision:
   the worker would not decide again (the contact rule), so nothing would come;
4. a ``decision_requested`` event goes to the events topic (acknowledged by the broker), and the
   gateway waits until a worker has committed the decision (its delivered mark in Redis); when
   the worker's batch held another trigger of the same customer (two requests at once), the
   worker points this request at that decision, and it is the answer (409, as in 3).

Waiting costs no polling: the workers announce each committed batch's answered ids on a Redis
pub/sub channel, and one listener task resolves the requests waiting for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import redis
import redis.asyncio as aioredis
from confluent_kafka import KafkaError, Message, Producer

from stream_app.engine.state import (
    answered_channel,
    decision_key,
    delivered_key,
    last_trigger_key,
    latest_key,
    superseded_key,
)
from stream_app.messages import DECISION_REQUESTED, EngagementEvent, action_id_for
from stream_app.redis_clients import AsyncRedisClient, aio_read_many

__all__ = ["Decided", "DecisionGateway", "OnlineFeatures", "request_event_id"]

FALLBACK_POLL_S = 0.25
SCHEMA_VERSION = b"1"  # of engagement-events (stream_app.pipeline.SUPPORTED_SCHEMA_VERSIONS)


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
    """Futures resolved when their request is answered in Redis: its own decision delivered,
    or (its batch decided for the customer on another trigger) the decision that superseded it.

    The workers announce the ids answered by each committed batch on `answered_channel`; one
    listener looks up those that requests wait for. A look at every waiting id each
    ``FALLBACK_POLL_S`` covers an announcement missed (pub/sub keeps nothing for a listener that
    was reconnecting)."""

    def __init__(self, client: AsyncRedisClient, pubsub: aioredis.Redis, channel: str) -> None:
        self._redis = client
        self._pubsub = pubsub
        self._channel = channel
        self._pending: dict[str, list[asyncio.Future[tuple[bytes, bool]]]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def expect(self, action_id: str) -> asyncio.Future[tuple[bytes, bool]]:
        """A future for ``action_id``'s answer, heard from the moment it is made: made before
        the request's event is sent, it cannot miss the announcement (``wait`` it)."""
        future: asyncio.Future[tuple[bytes, bool]] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(action_id, []).append(future)
        if not self._tasks or any(t.done() for t in self._tasks):
            for task in self._tasks:
                task.cancel()
            self._tasks = [asyncio.create_task(self._listen()), asyncio.create_task(self._poll())]
        return future

    async def wait(
        self,
        action_id: str,
        timeout_s: float,
        future: asyncio.Future[tuple[bytes, bool]] | None = None,
    ) -> tuple[bytes, bool] | None:
        """(the answering decision, whether it is another request's), or None after
        ``timeout_s``. Without an ``expect``ed future, the answer may be in Redis already (a
        retry): it is looked up first."""
        expected = future is not None
        future = future if future is not None else self.expect(action_id)
        try:
            if not expected:
                with contextlib.suppress(redis.RedisError):
                    await self._settle([action_id])
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            return None
        finally:
            self.forget(action_id, future)

    def forget(self, action_id: str, future: asyncio.Future[tuple[bytes, bool]]) -> None:
        """Stop listening for ``future`` (answered, timed out, or its event never sent)."""
        waiting = self._pending.get(action_id, [])
        if future in waiting:
            waiting.remove(future)
        if not waiting:
            self._pending.pop(action_id, None)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _listen(self) -> None:
        while True:
            with contextlib.suppress(redis.RedisError):  # reconnect; the poll covers the gap
                async with self._pubsub.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._channel)
                    async for message in pubsub.listen():
                        ids = [i for i in message["data"].decode().split() if i in self._pending]
                        if ids:
                            await self._settle(ids)
            await asyncio.sleep(FALLBACK_POLL_S)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(FALLBACK_POLL_S)
            if self._pending:
                with contextlib.suppress(redis.RedisError):  # an outage: the requests time out
                    await self._settle(list(self._pending))

    async def _settle(self, ids: list[str]) -> None:
        answers = await _delivered(self._redis, ids, superseded=True)
        winners = {i: w.decode() for i, (_, _, w) in zip(ids, answers, strict=True) if w}
        found = dict(
            zip(winners, await _delivered(self._redis, list(winners.values())), strict=True)
        )
        for action_id, (payload, delivered, _) in zip(ids, answers, strict=True):
            if delivered and payload is not None:
                self._resolve(action_id, (payload, False))
            elif action_id in winners:
                other, other_delivered, _ = found[action_id]
                if other_delivered and other is not None:
                    self._resolve(action_id, (other, True))

    def _resolve(self, action_id: str, answer: tuple[bytes, bool]) -> None:
        for future in self._pending.pop(action_id, []):
            if not future.done():
                future.set_result(answer)


async def _delivered(
    client: AsyncRedisClient, ids: list[str], superseded: bool = False
) -> list[tuple[bytes | None, bool, bytes | None]]:
    """(stored decision, delivered, superseded by) of each action_id, in one round trip."""
    if not ids:
        return []
    keys = [[decision_key(i) for i in ids], [delivered_key(i) for i in ids]]
    if superseded:
        keys.append([superseded_key(i) for i in ids])
    replies = await aio_read_many(client, keys)
    winners = replies[2] if superseded else [None] * len(ids)
    return [(p, d is not None, w) for p, d, w in zip(replies[0], replies[1], winners, strict=True)]


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


class OnlineFeatures(Protocol):
    """The online store's layout (FeatureStoreAdapter): where a customer's features live in
    Redis, and how a stored row reads."""

    def online_keys(self, customer_ids: list[str]) -> tuple[list[bytes], list[bytes]]: ...

    def decoded_row(self, values: Sequence[bytes | None]) -> dict[str, Any]: ...


class DecisionGateway:
    """Every read and wait goes through ``aio``, an asyncio Redis client on the engine's Redis
    (which is also the online store's), and ``pubsub`` hears the workers' announcements: no
    request holds a thread."""

    def __init__(
        self,
        *,
        events_topic: str,
        min_interval_s: float,
        timeout_s: float,
        producer: Producer,
        aio: AsyncRedisClient,
        pubsub: aioredis.Redis,
        features: OnlineFeatures,
    ) -> None:
        self.events_topic = events_topic
        self._min_interval_s = min_interval_s
        self._timeout_s = timeout_s
        self._sender = _Sender(producer)
        self._waiter = _DeliveryWaiter(aio, pubsub, answered_channel(events_topic))
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
        stored, features, last = await self._prechecks(action_id, customer_id)
        if stored is not None:
            return await self._earlier(stored, action_id, customer_id)
        known = not self._features.decoded_row(features)["cold_start"]
        if not known and not cold_start:
            return Decided("unknown_customer", action_id)
        recent = await self._recent(last, event_id, customer_id)
        if recent is not None:
            return recent
        event = EngagementEvent(
            event_id=event_id,
            customer_id=customer_id,
            event_type=DECISION_REQUESTED,
            occurred_at=datetime.now(UTC),
            properties=context,
        )
        answer = self._waiter.expect(action_id)
        try:
            await self._sender.send(self.events_topic, event)
        except BaseException:
            self._waiter.forget(action_id, answer)
            raise
        return await self._outcome(action_id, "created", answer)

    async def _prechecks(
        self, action_id: str, customer_id: str
    ) -> tuple[bytes | None, list[bytes | None], bytes | None]:
        """In one round trip: a decision already stored under the request's action_id, the
        customer's online features, and its last trigger."""
        keys, fields = self._features.online_keys([customer_id])
        async with self._aio.pipeline(transaction=False) as pipe:
            pipe.get(decision_key(action_id))
            pipe.hmget(keys[0], fields)  # type: ignore[arg-type]  # Feast's keys are bytes
            pipe.hget(last_trigger_key(self.events_topic), customer_id)
            stored, features, last = await pipe.execute()
        return stored, features, last

    async def _earlier(self, payload: bytes, action_id: str, customer_id: str) -> Decided:
        """A retry: the decision stored under this action_id (waited for if not yet
        delivered), or a refusal when the key was used for another customer."""
        if json.loads(payload)["customer_id"] != customer_id:
            return Decided("key_reused", action_id)
        return await self._outcome(action_id, "replayed")

    async def _outcome(
        self,
        action_id: str,
        status: str,
        expected: asyncio.Future[tuple[bytes, bool]] | None = None,
    ) -> Decided:
        answer = await self._waiter.wait(action_id, self._timeout_s, expected)
        if answer is None:
            return Decided("pending", action_id)
        payload, superseded = answer
        decision = _decoded(payload)
        if superseded and decision is not None:
            # decided on another trigger in the same batch: as recent as decisions get
            wait_s = max(self._min_interval_s, 1.0)
            return Decided("too_soon", decision["action_id"], decision, True, wait_s)
        return Decided(status, action_id, decision, delivered=True)

    async def _recent(self, value: bytes | None, event_id: str, customer_id: str) -> Decided | None:
        """A refusal with the customer's latest decision when its last trigger (``value``)
        was less than the minimum interval ago and was not this request."""
        if value is None:
            return None
        stamp, last_event_id = value.decode().split("|", 1)
        age_s = time.time() - float(stamp)
        if last_event_id == event_id or age_s >= self._min_interval_s:
            return None
        decision, delivered = await self.latest(customer_id)
        action_id = decision["action_id"] if decision else ""
        wait_s = self._min_interval_s - age_s
        return Decided("too_soon", action_id, decision, delivered, retry_after_s=wait_s)

    async def decision(self, action_id: str) -> tuple[dict[str, Any] | None, bool]:
        payload, delivered, _ = (await _delivered(self._aio, [action_id]))[0]
        return _decoded(payload), delivered

    async def latest(self, customer_id: str) -> tuple[dict[str, Any] | None, bool]:
        action_id = await self._aio.get(latest_key(customer_id))
        if action_id is None:
            return None, False
        return await self.decision(action_id.decode())

    async def features(self, customer_id: str) -> dict[str, Any]:
        """The customer's features as the engine reads them (``cold_start`` when unknown)."""
        keys, fields = self._features.online_keys([customer_id])
        values = await self._aio.hmget(keys[0], fields)  # type: ignore[misc,arg-type]  # redis-py types hash commands for both clients; Feast's keys are bytes
        row = {"customer_id": customer_id} | self._features.decoded_row(values)
        return {name: _plain(value) for name, value in row.items()}

    async def answers(self) -> dict[str, bool]:
        try:
            return {"redis": bool(await self._aio.ping())}  # type: ignore[misc]  # as above
        except redis.RedisError:
            return {"redis": False}

    async def stop_waiting(self) -> None:
        """End the waiter's listener (the app's shutdown, on its own event loop)."""
        await self._waiter.stop()

    def close(self) -> None:
        self._sender.close()


def _plain(value: Any) -> Any:
    """JSON-ready: a float that is not a number (NaN, infinite) becomes None."""
    return None if isinstance(value, float) and not math.isfinite(value) else value
