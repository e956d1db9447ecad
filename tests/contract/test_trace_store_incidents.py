"""Contract of the trace stores' incident side and record listing: SQLite and Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest
import redis.asyncio

from storage.protocols import IncidentLinks, RecordListing
from storage.records import RecordQuery, StoredRecord, StoredTrace, TraceQuery
from storage.trace_factory import open_trace_store
from storage.traces.redis import RedisTraceStore
from storage.traces.sqlite import SqliteTraceStore

Store = SqliteTraceStore | RedisTraceStore

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("redis", id="redis", marks=pytest.mark.integration),
]


@pytest.fixture(params=BACKENDS)
async def open_store(request: pytest.FixtureRequest, tmp_path: Path,
                     unique_prefix: str) -> AsyncIterator[Callable[..., Store]]:
    backend = str(request.param)
    url = (str(request.getfixturevalue("redis_url")) if backend == "redis"
           else f"sqlite:///{tmp_path}/traces.db")
    opened: list[Store] = []

    def make(*, trace_ttl_s: int = 3600, record_ttl_s: int = 3600) -> Store:
        store = open_trace_store(url, key_prefix=unique_prefix, trace_ttl_s=trace_ttl_s,
                                 record_ttl_s=record_ttl_s)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()
    if backend == "redis":
        client = redis.asyncio.Redis.from_url(url)
        try:
            keys = [k async for k in client.scan_iter(match=f"{unique_prefix}:*", count=1000)]
            for start in range(0, len(keys), 500):
                await client.delete(*keys[start: start + 500])
        finally:
            await client.aclose()


@pytest.fixture
def store(open_store: Callable[..., Store]) -> Store:
    return open_store()


def record(request_id: str, event_ms: int, *, model: str = "credit", sampled: bool = False,
           reason: str | None = None) -> StoredRecord:
    return StoredRecord(request_id=request_id, model=model, version="1", event_ms=event_ms,
                        received_ms=event_ms + 1, sampled=sampled, reason=reason,
                        body=b'{"r":1}', sealed_inputs=b"\x01sealed-" + request_id.encode())


def trace(request_id: str, event_ms: int, *, incidents: tuple[str, ...] = ()) -> StoredTrace:
    return StoredTrace(request_id=request_id, model="credit", version="1", reason="sampled",
                       event_ms=event_ms, body=f'{{"request_id":"{request_id}"}}'.encode(),
                       incidents=incidents)


async def listed(store: Store, query: RecordQuery) -> list[str]:
    out: list[str] = []
    while True:
        page = await store.list_records(query)
        assert len(page.items) <= query.limit
        out += [r.request_id for r in page.items]
        if page.next_cursor is None:
            return out
        query = replace(query, cursor=page.next_cursor)


def test_both_stores_satisfy_the_protocols(store: Store) -> None:
    listing: RecordListing = store
    links: IncidentLinks = store
    assert listing is links


async def test_records_list_newest_first_by_model_window_and_deferral(store: Store) -> None:
    base = time.time_ns() // 1_000_000
    await store.add_records([record(f"r{i:02d}", base - i * 10) for i in range(12)]
                            + [record(f"d{i}", base - 5 - i * 30, reason="near_threshold")
                               for i in range(3)]
                            + [record("s1", base - 7, sampled=True, reason="canary"),
                               record("other", base, model="fraud")])
    everything = await listed(store, RecordQuery(model="credit", limit=4))
    assert everything[:4] == ["r00", "d0", "s1", "r01"]
    assert len(everything) == 16 and "other" not in everything
    window = await listed(store, RecordQuery(model="credit", since_ms=base - 40,
                                             until_ms=base - 10, limit=2))
    assert window == ["r02", "r03", "d1", "r04"]  # since inclusive, until exclusive
    assert await listed(store, RecordQuery(model="credit", deferred_only=True,
                                           limit=2)) == ["d0", "d1", "d2"]
    page = await store.list_records(RecordQuery(model="credit", limit=1))
    assert page.items[0].sealed_inputs == b"\x01sealed-r00"
    assert page.items[0].deferred is False


async def test_a_duplicate_never_moves_the_listed_record(store: Store) -> None:
    base = time.time_ns() // 1_000_000
    await store.add_records([record("dup", base - 100)])
    await store.add_records([record("dup", base, reason="near_threshold")])
    page = await store.list_records(RecordQuery(model="credit", limit=10))
    assert [(r.request_id, r.event_ms) for r in page.items] == [("dup", base - 100)]
    assert (await store.list_records(RecordQuery(model="credit", deferred_only=True))).items == []


async def test_attach_links_existing_traces_once_and_search_finds_them(store: Store) -> None:
    base = time.time_ns() // 1_000_000
    await store.put_traces([trace("t1", base - 1), trace("t2", base - 2, incidents=("OLD",)),
                            trace("t3", base - 3)])
    assert sorted(await store.attach_incident("INC1", ["t1", "t2", "missing"])) == ["t1", "t2"]
    assert await store.attach_incident("INC1", ["t1"]) == ["t1"]
    found = await store.search_traces(TraceQuery(incident="INC1"))
    assert [t.request_id for t in found.items] == ["t1", "t2"]
    with_model = await store.search_traces(TraceQuery(model="credit", incident="INC1"))
    assert [t.request_id for t in with_model.items] == ["t1", "t2"]
    one = await store.get_trace("t1")
    two = await store.get_trace("t2")
    assert one is not None and one.incidents == ("INC1",)
    assert two is not None and two.incidents == ("OLD", "INC1")
    assert one.body == b'{"request_id":"t1"}'
    assert (await store.search_traces(TraceQuery(incident="OLD"))).items[0].request_id == "t2"


async def test_attached_traces_outlive_the_trace_retention(
        open_store: Callable[..., Store]) -> None:
    store = open_store(trace_ttl_s=1)
    base = time.time_ns() // 1_000_000
    await store.put_traces([trace("held", base), trace("dropped", base)])
    await store.attach_incident("INC1", ["held"])
    await asyncio.sleep(1.3)
    purge = getattr(store, "purge_expired", None)
    if purge is not None:
        await purge()
    assert await store.get_trace("dropped") is None
    kept = await store.get_trace("held")
    assert kept is not None and kept.incidents == ("INC1",)
    assert [t.request_id for t in (await store.search_traces(
        TraceQuery(incident="INC1"))).items] == ["held"]
