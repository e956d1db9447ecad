"""Open the trace store (and record log) named by a URL."""

from __future__ import annotations

from typing import Protocol
from urllib.parse import urlsplit

from storage.errors import UnsupportedStoreUrl
from storage.redis_client import open_redis_client
from storage.traces.redis import RedisTraceStore
from storage.traces.sqlite import SqliteTraceStore


class TraceStoreOpener(Protocol):
    """Builds one kind of store from its URL."""

    def __call__(self, url: str, *, key_prefix: str, trace_ttl_s: int,
                 record_ttl_s: int) -> SqliteTraceStore | RedisTraceStore: ...


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
    client = open_redis_client(url)
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
