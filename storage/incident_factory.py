"""Open the incident store that lives beside the trace store named by a URL."""

from __future__ import annotations

from typing import Protocol
from urllib.parse import urlsplit

from storage.errors import UnsupportedStoreUrl
from storage.incidents.redis import RedisIncidentStore
from storage.incidents.sqlite import SqliteIncidentStore
from storage.redis_client import open_redis_client

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
    client = open_redis_client(url)
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
