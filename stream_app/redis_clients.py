"""The Redis client every part of a worker shares, configured from the settings in one place.

Bounded waits: connecting and each reply wait at most ``NBA_REDIS_TIMEOUT_S``, and redis-py's
own retry (its maintained backoff) tries a failed call twice more within about a second. A
longer outage is not this client's to wait out: the call fails, and the worker's batch retry
(``stream_app.faust_app``) waits with backoff up to ``NBA_MAX_OUTAGE_S`` before the batch is
tried again. So a hung Redis never stalls a worker, and ``/readyz`` answers meanwhile.
"""

from __future__ import annotations

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from stream_app.settings import Settings

__all__ = ["redis_client"]


def redis_client(settings: Settings) -> redis.Redis:
    timeout = settings.redis_timeout_s
    return redis.Redis.from_url(
        settings.effective_redis_url(),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(ExponentialWithJitterBackoff(base=0.1, cap=0.5), retries=2),
        health_check_interval=30,
    )
