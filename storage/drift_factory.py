"""Open the drift window store that lives beside the trace store named by a URL."""

from __future__ import annotations

from typing import Protocol
from urllib.parse import urlsplit

from storage.drift.redis import RedisDriftWindowStore
from storage.drift.sqlite import SqliteDriftWindowStore
from storage.errors import UnsupportedStoreUrl
from storage.redis_client import open_redis_client

_SQLITE_PREFIX = "sqlite:///"


class DriftStoreOpener(Protocol):
    """Builds one kind of drift store from its URL."""

    def __call__(self, url: str, *, key_prefix: str,
                 retention_s: int) -> SqliteDriftWindowStore | RedisDriftWindowStore: ...


def _open_sqlite(url: str, *, key_prefix: str, retention_s: int) -> SqliteDriftWindowStore:
    del key_prefix  # one deployment per SQLite file
    if not url.startswith(_SQLITE_PREFIX) or len(url) == len(_SQLITE_PREFIX):
        raise UnsupportedStoreUrl(url)
    return SqliteDriftWindowStore(url[len(_SQLITE_PREFIX):], retention_s=retention_s)


def _open_redis(url: str, *, key_prefix: str, retention_s: int) -> RedisDriftWindowStore:
    # Ingest updates windows on every record: fail fast like the trace store does.
    client = open_redis_client(url)
    return RedisDriftWindowStore(client, key_prefix=key_prefix, retention_s=retention_s)


DRIFT_STORES: dict[str, DriftStoreOpener] = {
    "sqlite": _open_sqlite,
    "redis": _open_redis,
    "rediss": _open_redis,
}


def open_drift_store(url: str, *, key_prefix: str = "wl",
                     retention_s: int) -> SqliteDriftWindowStore | RedisDriftWindowStore:
    """Return the drift window store for the trace store URL (same file or server).

    Raises:
        UnsupportedStoreUrl: no store for the URL's scheme, or a malformed SQLite URL.
    """
    opener = DRIFT_STORES.get(urlsplit(url).scheme.lower())
    if opener is None:
        raise UnsupportedStoreUrl(url)
    return opener(url, key_prefix=key_prefix, retention_s=retention_s)
