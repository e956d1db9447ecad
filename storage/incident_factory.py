"""Open the incident store that lives beside the trace store named by a URL."""

from __future__ import annotations

from typing import Protocol
from urllib.parse import urlsplit

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from storage.errors import UnsupportedStoreUrl
from storage.incidents.redis import RedisIncidentStore
from storage.incidents.sqlite import SqliteIncidentStore
from storage.trace_factory import (
    REDIS_CONNECT_TIMEOUT_S,
    REDIS_HEALTH_CHECK_S,
    REDIS_RETRIES,
    REDIS_SOCKET_TIMEOUT_S,
)

_SQLITE_PREFIX = "sqlite:///"


class IncidentStoreOpener(Protocol):
    """Builds one kind of incident store from its URL."""

    def __call__(self, url: str, *,
                 key_prefix: str) -> SqliteIncidentStore | RedisIncidentStore: ...


def _open_sqlite(url: str, *, key_prefix: str) -> SqliteIncidentStore:
    del key_prefix  # one deployment per SQLite file
    if not url.startswith(_SQLITE_PREFIX) or len(url) == len(_SQLITE_PREFIX):
        raise UnsupportedStoreUrl(url)
    return SqliteIncidentStore(url[len(_SQLITE_PREFIX):])


def _open_redis(url: str, *, key_prefix: str) -> RedisIncidentStore:
    client = redis.asyncio.Redis.from_url(
        url, decode_responses=False, socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
        socket_timeout=REDIS_SOCKET_TIMEOUT_S, health_check_interval=REDIS_HEALTH_CHECK_S,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), REDIS_RETRIES),
    )
    return RedisIncidentStore(client, key_prefix=key_prefix)


INCIDENT_STORES: dict[str, IncidentStoreOpener] = {
    "sqlite": _open_sqlite,
    "redis": _open_redis,
    "rediss": _open_redis,
}


def open_incident_store(url: str, *,
                        key_prefix: str = "wl") -> SqliteIncidentStore | RedisIncidentStore:
    """Return the incident store for the trace store URL (same file or server).

    Raises:
        UnsupportedStoreUrl: no store for the URL's scheme, or a malformed SQLite URL.
    """
    opener = INCIDENT_STORES.get(urlsplit(url).scheme.lower())
    if opener is None:
        raise UnsupportedStoreUrl(url)
    return opener(url, key_prefix=key_prefix)
