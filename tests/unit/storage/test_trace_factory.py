from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio

import storage.traces
from storage.errors import UnsupportedStoreUrl
from storage.trace_factory import TRACE_STORES, open_trace_store
from storage.traces.redis import RedisTraceStore
from storage.traces.sqlite import SqliteTraceStore


def test_traces_package_exports_the_two_stores() -> None:
    assert storage.traces.__all__ == ["RedisTraceStore", "SqliteTraceStore"]
    assert set(TRACE_STORES) == {"sqlite", "redis", "rediss"}


@pytest.mark.parametrize(("url", "path"), [
    ("sqlite:///traces.db", "traces.db"),
    ("sqlite:///data/traces.db", "data/traces.db"),
    ("sqlite:////var/lib/whylens/traces.db", "/var/lib/whylens/traces.db"),
    ("sqlite:///:memory:", ":memory:"),
])
async def test_sqlite_urls_name_relative_absolute_and_memory_paths(url: str,
                                                                   path: str) -> None:
    store = open_trace_store(url, trace_ttl_s=60, record_ttl_s=60)
    assert isinstance(store, SqliteTraceStore) and store.backend == "sqlite"
    assert store._path == path
    await store.close()


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", "rediss://cache.internal:6380/2"])
async def test_redis_urls_open_without_connecting(url: str) -> None:
    store = open_trace_store(url, key_prefix="dep1", trace_ttl_s=60, record_ttl_s=60)
    assert isinstance(store, RedisTraceStore) and store.backend == "redis"
    assert not hasattr(store, "purge_expired")  # Redis expires keys itself
    await store.close()


@pytest.mark.parametrize("url", ["s3://bucket/traces", "postgres://db/x", "sqlite://", "",
                                 "sqlite://host/x.db", "/var/lib/traces.db"])
def test_unknown_or_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(UnsupportedStoreUrl):
        open_trace_store(url, trace_ttl_s=60, record_ttl_s=60)


async def test_redis_store_refuses_a_decoding_client() -> None:
    client = redis.asyncio.Redis.from_url("redis://127.0.0.1:1/0", decode_responses=True)
    with pytest.raises(ValueError, match="bytes"):
        RedisTraceStore(client, trace_ttl_s=60, record_ttl_s=60)
    await client.aclose()


def test_sqlite_store_does_no_io_until_used(tmp_path: Path) -> None:
    SqliteTraceStore(str(tmp_path / "later" / "t.db"), trace_ttl_s=60, record_ttl_s=60)
    assert not (tmp_path / "later").exists()
