"""One way to open an asyncio Redis client for the queue, archive feed and archive index."""

from __future__ import annotations

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from storage.trace_factory import (
    REDIS_CONNECT_TIMEOUT_S,
    REDIS_HEALTH_CHECK_S,
    REDIS_RETRIES,
    REDIS_SOCKET_TIMEOUT_S,
)


def open_redis_client(url: str) -> redis.asyncio.Redis:
    """Return a bytes-returning client with the trace store's timeouts; no I/O yet.

    The socket timeout must exceed any blocking read (`XREADGROUP BLOCK`) made with it.
    """
    return redis.asyncio.Redis.from_url(
        url, decode_responses=False, socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
        socket_timeout=REDIS_SOCKET_TIMEOUT_S, health_check_interval=REDIS_HEALTH_CHECK_S,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), REDIS_RETRIES),
    )
