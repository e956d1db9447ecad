"""Retention overrides, incident holds and sealed-input re-keying, on SQLite and Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest
import redis.asyncio

from storage.protocols import SealedInputLog, TraceHolds
from storage.records import SealedUpdate, StoredRecord, StoredTrace
from storage.trace_factory import open_trace_store
from storage.traces.redis import RedisTraceStore
from storage.traces.sqlite import SqliteTraceStore

Store = SqliteTraceStore | RedisTraceStore

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("redis", id="redis", marks=pytest.mark.integration),
]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path,
                unique_prefix: str) -> AsyncIterator[Store]:
    url = (str(request.getfixturevalue("redis_url")) if request.param == "redis"
           else f"sqlite:///{tmp_path}/traces.db")
    opened = open_trace_store(url, key_prefix=unique_prefix, trace_ttl_s=3600,
                              record_ttl_s=3600)
    yield opened
    await opened.close()
    if request.param == "redis":
        client = redis.asyncio.Redis.from_url(url)
        keys = [k async for k in client.scan_iter(match=f"{unique_prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def trace(request_id: str, *, ttl_s: int | None = None) -> StoredTrace:
    return StoredTrace(request_id=request_id, model="credit", version="1", reason="sampled",
                       event_ms=_now_ms(), body=f'{{"marker":"{request_id}"}}'.encode(),
                       ttl_s=ttl_s)


def record(request_id: str, *, ttl_s: int | None = None,
           inputs_ttl_s: int | None = None) -> StoredRecord:
    return StoredRecord(request_id=request_id, model="credit", version="1",
                        event_ms=_now_ms(), received_ms=_now_ms(), sampled=False, reason=None,
                        body=b"{}", sealed_inputs=b"sealed:" + request_id.encode(),
                        ttl_s=ttl_s, inputs_ttl_s=inputs_ttl_s)


async def _expire(store: Store) -> None:
    await asyncio.sleep(1.2)
    if isinstance(store, SqliteTraceStore):
        await store.purge_expired()


async def test_retention_overrides_sealed_input_expiry_and_holds(store: Store) -> None:
    holds: TraceHolds = store
    await store.put_traces([trace("short", ttl_s=1), trace("long"), trace("held", ttl_s=1),
                            trace("released", ttl_s=1)])
    await store.add_records([record("short-r", ttl_s=1), record("long-r"),
                             record("inputs-r", inputs_ttl_s=1)])
    kept = await store.get_record("inputs-r")
    assert kept is not None and kept.sealed_inputs == b"sealed:inputs-r"
    assert await holds.retain_traces(["held", "released", "unknown"], until_ms=None) == 2
    assert await holds.retain_traces(["released"], until_ms=_now_ms() + 1000) == 1
    await _expire(store)
    assert await store.get_trace("short") is None
    assert await store.get_record("short-r") is None
    assert await store.get_trace("long") is not None
    assert await store.get_record("long-r") is not None
    # Sealed inputs expire before their log entry, which stays.
    after = await store.get_record("inputs-r")
    assert after is not None and after.sealed_inputs == b"" and after.body == b"{}"
    # A held trace outlives its retention; a released one expires at the given time.
    assert await store.get_trace("held") is not None
    assert await store.get_trace("released") is None


async def test_a_duplicate_answers_with_the_earlier_sealed_inputs(store: Store) -> None:
    await store.add_records([record("dup")])
    [earlier] = await store.add_records([replace(record("dup"), sealed_inputs=b"other")])
    assert earlier is not None and earlier.sealed_inputs == b"sealed:dup"


async def test_scan_visits_every_sealed_input_and_replace_is_compare_and_set(
        store: Store) -> None:
    log: SealedInputLog = store
    await store.add_records([record(f"r{i}") for i in range(250)])
    seen: dict[str, bytes] = {}
    cursor: str | None = None
    while True:
        page = await log.scan_sealed_inputs(cursor, limit=40)
        seen.update({item.request_id: item.sealed for item in page.items})
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == {f"r{i}": f"sealed:r{i}".encode() for i in range(250)}
    updates = [SealedUpdate("r1", "credit", b"sealed:r1", b"new:r1"),
               SealedUpdate("r2", "credit", b"stale bytes", b"new:r2")]
    assert await log.replace_sealed_inputs(updates) == 1
    one, two = await store.get_record("r1"), await store.get_record("r2")
    assert one is not None and one.sealed_inputs == b"new:r1"
    assert two is not None and two.sealed_inputs == b"sealed:r2"


@pytest.mark.integration
async def test_redis_keys_carry_the_retention_as_ttl(redis_url: str,
                                                     unique_prefix: str) -> None:
    store = open_trace_store(redis_url, key_prefix=unique_prefix, trace_ttl_s=3600,
                             record_ttl_s=7200)
    client = redis.asyncio.Redis.from_url(redis_url)
    head = f"{unique_prefix}:{{credit}}"
    try:
        await store.put_traces([trace("t1", ttl_s=600), trace("t2")])
        await store.add_records([record("r1", ttl_s=900, inputs_ttl_s=300), record("r2")])
        ttl: Callable[[str], object] = client.pttl
        assert 599_000 < await ttl(f"{head}:t:t1") <= 600_000
        assert 3_599_000 < await ttl(f"{head}:t:t2") <= 3_600_000
        assert 899_000 < await ttl(f"{head}:r:r1") <= 900_000
        assert 299_000 < await ttl(f"{head}:s:r1") <= 300_000
        assert 7_199_000 < await ttl(f"{head}:s:r2") <= 7_200_000
        await store.put_traces([trace("gone", ttl_s=1)])
        await asyncio.sleep(1.2)
        assert await client.exists(f"{head}:t:gone") == 0
    finally:
        await store.close()
        await client.aclose()


async def test_sqlite_purge_leaves_no_expired_bytes_in_the_files(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = SqliteTraceStore(str(path), trace_ttl_s=3600, record_ttl_s=3600)
    markers = [f"expired-marker-{i:04d}" for i in range(300)]
    try:
        await store.put_traces([trace(m, ttl_s=1) for m in markers] + [trace("kept-marker")])
        await asyncio.sleep(1.2)
        assert await store.purge_expired() == len(markers)
    finally:
        await store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("t.db"))
    assert b"kept-marker" in raw
    assert not [m for m in markers if m.encode() in raw]


async def test_sqlite_purge_leaves_no_expired_log_entry_or_sealed_input_in_the_files(
        tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = SqliteTraceStore(str(path), trace_ttl_s=3600, record_ttl_s=3600)
    gone = [f"gone-log-{i:04d}" for i in range(200)]
    inputs_only = [f"inputs-only-{i:04d}" for i in range(200)]

    def logged(request_id: str, **ttl: int) -> StoredRecord:
        return replace(record(request_id, **ttl),
                       body=f'{{"body":"body-of-{request_id}"}}'.encode())

    try:
        await store.add_records([logged(r, ttl_s=1) for r in gone]
                                + [logged(r, inputs_ttl_s=1) for r in inputs_only]
                                + [logged("kept-log")])
        await asyncio.sleep(1.2)
        await store.purge_expired()
        kept = await store.get_record(inputs_only[0])
        assert kept is not None and kept.sealed_inputs == b""
    finally:
        await store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("t.db"))
    assert b"sealed:kept-log" in raw and b"body-of-kept-log" in raw
    # Expired log entries leave entirely; expired sealed inputs leave while the entry stays.
    assert not [r for r in gone if f"body-of-{r}".encode() in raw or
                f"sealed:{r}".encode() in raw]
    assert not [r for r in inputs_only if f"sealed:{r}".encode() in raw]
    assert all(f"body-of-{r}".encode() in raw for r in inputs_only)
