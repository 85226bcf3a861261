"""The Redis client every part of a worker shares, configured from the settings in one place.

Bounded waits: connecting and each reply wait at most ``NBA_REDIS_TIMEOUT_S``, and redis-py's
own retry (its maintained backoff) tries a failed call twice more within about a second. A
longer outage is not this client's to wait out: the call fails, and the worker's batch retry
(``stream_app.faust_app``) waits with backoff up to ``NBA_MAX_OUTAGE_S`` before the batch is
tried again. So a hung Redis never stalls a worker, and ``/readyz`` answers meanwhile.

Redis Cluster (``NBA_REDIS_CLUSTER=true``; ``NBA_REDIS_URL`` names any one node): the client is
redis-py's ``RedisCluster``, which finds the others and routes each key to its slot's master.
The engine's keys are laid out for it: keys that one script or transaction touches together
share a hash tag (the ledger of a period, the outcome counts of a topic), every other key stands
alone, and reads of many keys go through ``read_many`` (one round trip per node), since a
cluster's MGET takes keys of one slot only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import redis
import redis.asyncio as aioredis
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.retry import Retry

from stream_app.settings import Settings

__all__ = [
    "AsyncRedisClient",
    "RedisClient",
    "aio_redis_client",
    "aio_pubsub_client",
    "aio_read_many",
    "hash_tag",
    "lua_script",
    "queue_reads",
    "read_many",
    "redis_client",
    "regroup",
]

# redis-py's cluster client has the same commands as the single-server one, but no common base.
RedisClient: TypeAlias = redis.Redis | RedisCluster
AsyncRedisClient: TypeAlias = aioredis.Redis | aioredis.RedisCluster


def _options(settings: Settings) -> dict[str, Any]:
    timeout = settings.redis_timeout_s
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(ExponentialWithJitterBackoff(base=0.1, cap=0.5), retries=2),
    }


def redis_client(settings: Settings) -> RedisClient:
    url = settings.effective_redis_url()
    if settings.redis_cluster:
        return RedisCluster.from_url(url, **_options(settings))
    return redis.Redis.from_url(url, health_check_interval=30, **_options(settings))


def aio_redis_client(settings: Settings) -> AsyncRedisClient:
    """The asyncio client of the HTTP API (reads and waits): bounded waits, no retry (a request
    that fails is answered at once; its client may retry it)."""
    url, timeout = settings.effective_redis_url(), settings.redis_timeout_s
    if settings.redis_cluster:
        return aioredis.RedisCluster.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
    return aioredis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


def aio_pubsub_client(settings: Settings) -> aioredis.Redis:
    """A plain asyncio client for pub/sub. On a cluster, the node ``NBA_REDIS_URL`` names: a
    cluster forwards every PUBLISH to all its nodes, so one subscription on any node hears it
    (redis-py's asyncio cluster client has no pub/sub of its own)."""
    timeout = settings.redis_timeout_s
    return aioredis.Redis.from_url(
        settings.effective_redis_url(), socket_timeout=timeout, socket_connect_timeout=timeout
    )


def lua_script(client: RedisClient, text: str) -> Script:
    """``client.register_script(text)`` for either client (redis-py types it for the
    single-server client only; the cluster's runs it on the slot of the keys it is given)."""
    return client.register_script(text)  # type: ignore[misc]  # see the doc


def hash_tag(name: str) -> str:
    """``{name}``: Redis Cluster hashes only what is inside the braces, so keys that carry the
    same tag share a slot and one script or transaction may touch them together."""
    return "{" + name + "}"


def read_many(client: RedisClient, key_lists: Sequence[Sequence[str]]) -> list[list[Any]]:
    """The value (or None) of every key of each list, in one pipeline: one MGET per list on a
    single server, one GET per key on a cluster (its pipeline sends each node its keys)."""
    with client.pipeline(transaction=False) as pipe:
        queue_reads(pipe, key_lists, isinstance(client, RedisCluster))
        replies = pipe.execute()
    return regroup(replies, key_lists, isinstance(client, RedisCluster))


async def aio_read_many(
    client: AsyncRedisClient, key_lists: Sequence[Sequence[str]]
) -> list[list[Any]]:
    """``read_many`` on an asyncio client."""
    cluster = isinstance(client, aioredis.RedisCluster)
    async with client.pipeline(transaction=False) as pipe:
        queue_reads(pipe, key_lists, cluster)
        replies = await pipe.execute()
    return regroup(replies, key_lists, cluster)


def queue_reads(pipe: Any, key_lists: Sequence[Sequence[str]], cluster: bool) -> None:
    """``read_many``'s reads queued in the caller's pipeline (which may carry more after them;
    ``regroup`` reads the replies of these first)."""
    for keys in key_lists:
        if not keys:
            continue
        if cluster:
            for key in keys:
                pipe.get(key)
        else:
            pipe.mget(keys)


def regroup(
    replies: list[Any], key_lists: Sequence[Sequence[str]], cluster: bool
) -> list[list[Any]]:
    grouped: list[list[Any]] = []
    position = 0
    for keys in key_lists:
        if not keys:
            grouped.append([])
        elif cluster:
            grouped.append(list(replies[position : position + len(keys)]))
            position += len(keys)
        else:
            grouped.append(list(replies[position]))
            position += 1
    return grouped
