"""Open the audit log that lives beside the trace store named by a URL."""

from __future__ import annotations

from typing import Protocol
from urllib.parse import urlsplit

from storage.audit.redis import RedisAuditLog
from storage.audit.sqlite import SqliteAuditLog
from storage.errors import UnsupportedStoreUrl
from storage.redis_client import open_redis_client

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
    client = open_redis_client(url)
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
