"""Open the audit log that lives beside the trace store named by a URL."""

from __future__ import annotations

from typing import Protocol
from urllib.parse import urlsplit

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from storage.audit.redis import RedisAuditLog
from storage.audit.sqlite import SqliteAuditLog
from storage.errors import UnsupportedStoreUrl
from storage.trace_factory import (
    REDIS_CONNECT_TIMEOUT_S,
    REDIS_HEALTH_CHECK_S,
    REDIS_RETRIES,
    REDIS_SOCKET_TIMEOUT_S,
)

_SQLITE_PREFIX = "sqlite:///"


class AuditLogOpener(Protocol):
    """Builds one kind of audit log from its URL."""

    def __call__(self, url: str, *, key_prefix: str,
                 max_entries: int) -> SqliteAuditLog | RedisAuditLog: ...


def _open_sqlite(url: str, *, key_prefix: str, max_entries: int) -> SqliteAuditLog:
    del key_prefix  # one deployment per SQLite file
    if not url.startswith(_SQLITE_PREFIX) or len(url) == len(_SQLITE_PREFIX):
        raise UnsupportedStoreUrl(url)
    return SqliteAuditLog(url[len(_SQLITE_PREFIX):], max_entries=max_entries)


def _open_redis(url: str, *, key_prefix: str, max_entries: int) -> RedisAuditLog:
    client = redis.asyncio.Redis.from_url(
        url, decode_responses=False, socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
        socket_timeout=REDIS_SOCKET_TIMEOUT_S, health_check_interval=REDIS_HEALTH_CHECK_S,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), REDIS_RETRIES),
    )
    return RedisAuditLog(client, key_prefix=key_prefix, max_entries=max_entries)


AUDIT_LOGS: dict[str, AuditLogOpener] = {
    "sqlite": _open_sqlite,
    "redis": _open_redis,
    "rediss": _open_redis,
}


def open_audit_log(url: str, *, key_prefix: str = "wl",
                   max_entries: int) -> SqliteAuditLog | RedisAuditLog:
    """Return the audit log for the trace store URL (same SQLite file or Redis server).

    Raises:
        UnsupportedStoreUrl: no audit log for the URL's scheme, or a malformed SQLite URL.
    """
    opener = AUDIT_LOGS.get(urlsplit(url).scheme.lower())
    if opener is None:
        raise UnsupportedStoreUrl(url)
    return opener(url, key_prefix=key_prefix, max_entries=max_entries)
