"""Open the trace store (and record log) named by a URL."""

from __future__ import annotations

from typing import Protocol
from urllib.parse import urlsplit

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from storage.errors import UnsupportedStoreUrl
from storage.traces.redis import RedisTraceStore
from storage.traces.sqlite import SqliteTraceStore


class TraceStoreOpener(Protocol):
    """Builds one kind of store from its URL."""

    def __call__(self, url: str, *, key_prefix: str, trace_ttl_s: int,
                 record_ttl_s: int) -> SqliteTraceStore | RedisTraceStore: ...


# A store that does not answer must fail the request quickly (503 and the spool take
# over), not hang the ingest path: short timeouts and two quick retries.
REDIS_CONNECT_TIMEOUT_S = 2.0
REDIS_SOCKET_TIMEOUT_S = 5.0
REDIS_RETRIES = 2
REDIS_HEALTH_CHECK_S = 30

_SQLITE_PREFIX = "sqlite:///"


def _open_sqlite(url: str, *, key_prefix: str, trace_ttl_s: int,
                 record_ttl_s: int) -> SqliteTraceStore:
    del key_prefix  # one deployment per SQLite file: nothing to prefix
    # sqlite:///relative.db, sqlite:////absolute.db and sqlite:///:memory: (as SQLAlchemy).
    if not url.startswith(_SQLITE_PREFIX) or len(url) == len(_SQLITE_PREFIX):
        raise UnsupportedStoreUrl(url)
    return SqliteTraceStore(url[len(_SQLITE_PREFIX):], trace_ttl_s=trace_ttl_s,
                            record_ttl_s=record_ttl_s)


def _open_redis(url: str, *, key_prefix: str, trace_ttl_s: int,
                record_ttl_s: int) -> RedisTraceStore:
    # Creating the client does no I/O; the first command connects.
    client = redis.asyncio.Redis.from_url(
        url, decode_responses=False, socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
        socket_timeout=REDIS_SOCKET_TIMEOUT_S, health_check_interval=REDIS_HEALTH_CHECK_S,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), REDIS_RETRIES),
    )
    return RedisTraceStore(client, key_prefix=key_prefix, trace_ttl_s=trace_ttl_s,
                           record_ttl_s=record_ttl_s)


TRACE_STORES: dict[str, TraceStoreOpener] = {
    "sqlite": _open_sqlite,
    "redis": _open_redis,
    "rediss": _open_redis,
}


def open_trace_store(url: str, *, key_prefix: str = "wl", trace_ttl_s: int,
                     record_ttl_s: int) -> SqliteTraceStore | RedisTraceStore:
    """Return the store for `url`; it implements both `TraceStore` and `RecordLog`.

    `sqlite:///path.db` (relative), `sqlite:////abs/path.db`, `sqlite:///:memory:`,
    `redis://host:port/db`, `rediss://...` (TLS). No I/O happens until the first call.

    Raises:
        UnsupportedStoreUrl: no store for the URL's scheme, or a malformed SQLite URL.
    """
    opener = TRACE_STORES.get(urlsplit(url).scheme.lower())
    if opener is None:
        raise UnsupportedStoreUrl(url)
    return opener(url, key_prefix=key_prefix, trace_ttl_s=trace_ttl_s,
                  record_ttl_s=record_ttl_s)
