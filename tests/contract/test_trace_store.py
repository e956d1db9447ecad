"""One contract for every TraceStore + RecordLog implementation: SQLite and Redis."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
from redis.crc import key_slot

from storage.cursor import decode_cursor
from storage.errors import CursorInvalid, StoreUnavailable
from storage.protocols import ExpiringStore, RecordLog, TraceStore
from storage.records import StoredRecord, StoredTrace, TraceQuery
from storage.trace_factory import open_trace_store
from storage.traces.redis import RedisTraceStore
from storage.traces.sqlite import SqliteTraceStore

Store = SqliteTraceStore | RedisTraceStore
OpenStore = Callable[..., Store]

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("redis", id="redis", marks=pytest.mark.integration),
]
BINARY_BODY = bytes(range(256)) * 8 + b'{"request_id": "r"}\x00\xff'


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _delete_prefix(url: str, prefix: str) -> None:
    client = redis.asyncio.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for start in range(0, len(keys), 500):
            await client.delete(*keys[start: start + 500])
    finally:
        await client.aclose()


@pytest.fixture
async def open_store(backend: str, request: pytest.FixtureRequest, tmp_path: Path,
                     unique_prefix: str) -> AsyncIterator[OpenStore]:
    """Open stores of the backend (several share one database, like replicas)."""
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
        await _delete_prefix(url, unique_prefix)


@pytest.fixture
def store(open_store: OpenStore) -> Store:
    return open_store()


@pytest.fixture
def now_ms() -> int:
    return time.time_ns() // 1_000_000


def make_trace(request_id: str, event_ms: int, *, model: str = "credit", version: str = "3",
               reason: str | None = "sampled", incidents: tuple[str, ...] = (),
               body: bytes | None = None) -> StoredTrace:
    return StoredTrace(request_id=request_id, model=model, version=version, reason=reason,
                       event_ms=event_ms, body=body or f'{{"id":"{request_id}"}}'.encode(),
                       incidents=incidents)


def make_record(request_id: str, event_ms: int, *, model: str = "credit",
                body: bytes = b'{"first":true}', sampled: bool = True) -> StoredRecord:
    return StoredRecord(request_id=request_id, model=model, version="3", event_ms=event_ms,
                        received_ms=event_ms + 5, sampled=sampled,
                        reason="near_threshold" if sampled else None, body=body,
                        sealed_inputs=b"\x01sealed\x00" + request_id.encode())


def newest_first(traces: list[StoredTrace]) -> list[StoredTrace]:
    return sorted(traces, key=lambda t: (t.event_ms, t.request_id), reverse=True)


async def collect(store: Store, query: TraceQuery) -> list[StoredTrace]:
    """Follow next_cursor to the end, checking every page."""
    items: list[StoredTrace] = []
    while True:
        page = await store.search_traces(query)
        assert len(page.items) <= query.limit
        if page.next_cursor is not None:
            assert len(page.items) == query.limit
        items += page.items
        if page.next_cursor is None:
            return items
        query = replace(query, cursor=page.next_cursor)


def test_both_stores_satisfy_the_protocols(store: Store) -> None:
    traces: TraceStore = store
    records: RecordLog = store
    assert traces.backend in {"sqlite", "redis"} and records is store


async def test_put_then_get_round_trips_binary_body_and_incidents(store: Store,
                                                                   now_ms: int) -> None:
    with_all = make_trace("r-1", now_ms, body=BINARY_BODY, incidents=("INC1", "INC:2"))
    without_reason = make_trace("r.2:x", now_ms - 1, reason=None)
    await store.put_traces([with_all, without_reason])
    assert await store.get_trace("r-1") == with_all
    assert await store.get_trace("r.2:x") == without_reason


async def test_get_unknown_returns_none(store: Store) -> None:
    assert await store.get_trace("nope") is None
    assert await store.get_record("nope") is None


async def test_empty_batches_are_no_ops(store: Store) -> None:
    await store.put_traces([])
    assert await store.add_records([]) == []


async def test_re_put_replaces_trace_and_its_search_entries(store: Store, now_ms: int) -> None:
    first = make_trace("r-1", now_ms - 10, version="1", reason="sampled", incidents=("I1",))
    second = make_trace("r-1", now_ms, version="2", reason="canary", body=b"second")
    await store.put_traces([first])
    await store.put_traces([second])
    assert await store.get_trace("r-1") == second
    for query in (TraceQuery(reason="sampled"), TraceQuery(model="credit", version="1"),
                  TraceQuery(incident="I1"), TraceQuery(model="credit", reason="sampled")):
        assert (await store.search_traces(query)).items == [], query
    for query in (TraceQuery(), TraceQuery(reason="canary"),
                  TraceQuery(model="credit", version="2", reason="canary")):
        assert (await store.search_traces(query)).items == [second], query


async def test_duplicate_record_returns_the_first(store: Store, now_ms: int) -> None:
    first = make_record("r-1", now_ms)
    assert await store.add_records([first]) == [None]
    again = make_record("r-1", now_ms + 100, body=b'{"second":true}', sampled=False)
    assert await store.add_records([again]) == [first]
    assert await store.get_record("r-1") == first


async def test_mixed_batch_inserts_new_and_answers_duplicates(store: Store,
                                                              now_ms: int) -> None:
    kept = make_record("a", now_ms)
    await store.add_records([kept])
    batch = [make_record("b", now_ms), make_record("a", now_ms, body=b"other"),
             make_record("c", now_ms)]
    assert await store.add_records(batch) == [None, kept, None]
    assert await store.get_record("b") == batch[0]
    assert await store.get_record("c") == batch[2]


async def test_same_request_id_twice_in_one_batch_keeps_the_first(store: Store,
                                                                  now_ms: int) -> None:
    first = make_record("r-1", now_ms)
    second = make_record("r-1", now_ms, body=b"second")
    assert await store.add_records([first, second]) == [None, first]
    assert await store.get_record("r-1") == first


async def test_request_id_logged_for_another_model_answers_the_first_record(
        store: Store, now_ms: int) -> None:
    first = make_record("shared", now_ms, model="credit")
    await store.add_records([first])
    assert await store.add_records([make_record("shared", now_ms, model="fraud")]) == [first]
    twice = [make_record("shared", now_ms, model="fraud"),
             make_record("shared", now_ms + 1, model="fraud")]
    assert await store.add_records(twice) == [first, first]
    assert await store.get_record("shared") == first


def _dataset(now_ms: int) -> list[StoredTrace]:
    traces = []
    for i in range(36):
        traces.append(make_trace(
            f"r-{i:02d}", now_ms - 1000 + (i * 7) % 23,
            model=("credit", "fraud")[i % 2], version=("1", "2", "3")[i % 3],
            reason=("sampled", "canary", None)[i % 4 % 3],
            incidents=("INC1",) if i % 5 == 0 else ("INC1", "INC2") if i % 5 == 1 else (),
        ))
    return traces


def _matches(trace: StoredTrace, query: TraceQuery) -> bool:
    return ((query.model is None or trace.model == query.model)
            and (query.version is None or trace.version == query.version)
            and (query.reason is None or trace.reason == query.reason)
            and (query.incident is None or query.incident in trace.incidents)
            and (query.since_ms is None or trace.event_ms >= query.since_ms)
            and (query.until_ms is None or trace.event_ms < query.until_ms))


async def test_every_filter_combination_finds_exactly_its_traces(store: Store,
                                                                 now_ms: int) -> None:
    traces = _dataset(now_ms)
    await store.put_traces(traces)
    combos = itertools.product((None, "credit", "fraud"), (None, "1", "2"),
                               (None, "sampled", "canary"), (None, "INC1", "INC2"))
    checked = 0
    for model, version, reason, incident in combos:
        if version is not None and model is None:
            continue
        query = TraceQuery(model=model, version=version, reason=reason, incident=incident,
                           limit=4)
        expected = newest_first([t for t in traces if _matches(t, query)])
        assert await collect(store, query) == expected, query
        checked += 1
    assert checked == 3 * 3 * 3 + 2 * 2 * 3 * 3


async def test_since_is_inclusive_and_until_exclusive(store: Store, now_ms: int) -> None:
    traces = _dataset(now_ms)
    await store.put_traces(traces)
    times = sorted({t.event_ms for t in traces})
    since, until = times[3], times[-4]
    for query in (TraceQuery(since_ms=since, until_ms=until, limit=5),
                  TraceQuery(model="credit", since_ms=since, limit=3),
                  TraceQuery(reason="sampled", until_ms=until, limit=2),
                  TraceQuery(incident="INC1", since_ms=since, until_ms=until, limit=2)):
        expected = newest_first([t for t in traces if _matches(t, query)])
        assert expected and await collect(store, query) == expected, query
    empty = TraceQuery(since_ms=times[-1] + 1)
    assert (await store.search_traces(empty)).items == []


async def test_results_are_newest_first_then_request_id_descending(store: Store,
                                                                   now_ms: int) -> None:
    traces = [make_trace("b", now_ms), make_trace("c", now_ms - 5), make_trace("a", now_ms),
              make_trace("d", now_ms - 5)]
    await store.put_traces(traces)
    page = await store.search_traces(TraceQuery(limit=10))
    assert [t.request_id for t in page.items] == ["b", "a", "d", "c"]
    assert page.next_cursor is None


async def test_a_full_last_page_has_no_cursor(store: Store, now_ms: int) -> None:
    await store.put_traces([make_trace(f"r{i}", now_ms - i) for i in range(3)])
    page = await store.search_traces(TraceQuery(limit=3))
    assert len(page.items) == 3 and page.next_cursor is None


@pytest.mark.parametrize("filters", [
    TraceQuery(), TraceQuery(model="credit"), TraceQuery(reason="canary"),
    TraceQuery(model="credit", version="3", reason="canary"),
    TraceQuery(incident="INC1", reason="canary"), TraceQuery(model="credit", incident="INC1"),
], ids=["global", "model", "reason", "model-version-reason", "incident-reason",
        "model-incident"])
async def test_cursor_pagination_neither_skips_nor_repeats_across_ties(
        store: Store, now_ms: int, filters: TraceQuery) -> None:
    # 120 traces on 4 event times: every page boundary falls inside a tie group.
    traces = [make_trace(f"t{(i * 37) % 120:03d}", now_ms - (i % 4), incidents=("INC1",),
                         reason="canary" if i % 5 == 0 else "sampled") for i in range(120)]
    for start in range(0, 120, 25):
        await store.put_traces(traces[start: start + 25])
    expected = newest_first([t for t in traces if _matches(t, filters)])
    for limit in (7, 30, 1):
        items = await collect(store, replace(filters, limit=limit))
        assert items == expected
        assert len({t.request_id for t in items}) == len(expected) >= 24


@pytest.mark.parametrize(("count", "times"), [(60, 3), (1200, 1)],
                         ids=["small-ties", "one-big-tie"])
async def test_pagination_resumes_after_the_cursor_when_its_trace_moved(
        store: Store, now_ms: int, count: int, times: int) -> None:
    traces = [make_trace(f"t{i:04d}", now_ms - (i % times)) for i in range(count)]
    await store.put_traces(traces)
    for filters in (TraceQuery(model="credit"), TraceQuery()):
        first = await store.search_traces(replace(filters, limit=10))
        assert first.next_cursor is not None
        position = decode_cursor(first.next_cursor)
        moved = first.items[-1]
        await store.put_traces([replace(moved, event_ms=now_ms + 1000)])
        rest = await collect(store, replace(filters, limit=count // 7, cursor=first.next_cursor))
        expected = [t for t in newest_first(traces)
                    if (t.event_ms, t.request_id) < (position.event_ms, position.request_id)]
        assert rest == expected
        await store.put_traces([moved])


async def test_malformed_queries_are_refused(store: Store) -> None:
    with pytest.raises(CursorInvalid):
        await store.search_traces(TraceQuery(cursor="not a cursor"))
    with pytest.raises(ValueError, match="model"):
        await store.search_traces(TraceQuery(version="3"))
    with pytest.raises(ValueError, match="limit"):
        await store.search_traces(TraceQuery(limit=0))


async def test_expired_traces_and_records_vanish(open_store: OpenStore, now_ms: int) -> None:
    short = open_store(trace_ttl_s=1, record_ttl_s=1)
    lasting = open_store()
    await short.put_traces([make_trace("gone", now_ms)])
    await lasting.put_traces([make_trace("kept", now_ms - 1)])
    old = make_record("gone", now_ms)
    assert await short.add_records([old]) == [None]
    await asyncio.sleep(1.3)
    assert await short.get_trace("gone") is None
    assert await short.get_record("gone") is None
    for query in (TraceQuery(), TraceQuery(model="credit", reason="sampled")):
        assert [t.request_id for t in (await short.search_traces(query)).items] == ["kept"]
    # Past retention the request ID is new again.
    renewed = make_record("gone", now_ms, body=b"new")
    assert await short.add_records([renewed]) == [None]
    assert await short.get_record("gone") == renewed


async def test_unreachable_store_raises_store_unavailable(backend: str, tmp_path: Path,
                                                          now_ms: int) -> None:
    if backend == "redis":
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        url = f"redis://127.0.0.1:{port}/0"
    else:
        blocker = f"{tmp_path}/regular-file"
        with open(blocker, "w") as handle:
            handle.write("not a folder")
        url = f"sqlite:///{blocker}/sub/traces.db"
    store = open_trace_store(url, key_prefix="wltest-unreachable", trace_ttl_s=60,
                             record_ttl_s=60)
    try:
        calls: list[Callable[[], Awaitable[Any]]] = [
            store.ping, lambda: store.get_trace("r"), lambda: store.get_record("r"),
            lambda: store.put_traces([make_trace("r", now_ms)]),
            lambda: store.add_records([make_record("r", now_ms)]),
            lambda: store.search_traces(TraceQuery(model="credit")),
        ]
        for call in calls:
            with pytest.raises(StoreUnavailable) as caught:
                await call()
            assert caught.value.backend == backend
            assert caught.value.__cause__ is not None
    finally:
        await store.close()


async def test_concurrent_add_records_from_replicas_insert_once(open_store: OpenStore,
                                                                now_ms: int) -> None:
    replicas = [open_store() for _ in range(4)]
    attempts = [make_record("same", now_ms, body=f"attempt {i}".encode()) for i in range(24)]
    answers = await asyncio.gather(*(replicas[i % 4].add_records([record])
                                     for i, record in enumerate(attempts)))
    inserted = [i for i, (answer,) in enumerate(answers) if answer is None]
    assert len(inserted) == 1
    winner = attempts[inserted[0]]
    assert all(answer == winner for (answer,) in answers if answer is not None)
    assert await replicas[0].get_record("same") == winner
    # Overlapping batches: every request ID is inserted by exactly one of them.
    batches = [[make_record(f"b{j}", now_ms) for j in range(i, i + 10)] for i in range(8)]
    results = await asyncio.gather(*(replicas[i % 4].add_records(batch)
                                     for i, batch in enumerate(batches)))
    inserts = [r.request_id for batch, answer in zip(batches, results, strict=True)
               for r, a in zip(batch, answer, strict=True) if a is None]
    assert sorted(inserts) == sorted(f"b{j}" for j in range(17))


async def test_sqlite_purge_deletes_expired_rows(tmp_path: Path, now_ms: int) -> None:
    store = open_trace_store(f"sqlite:///{tmp_path}/nested/dir/t.db", trace_ttl_s=1,
                             record_ttl_s=1)
    try:
        assert isinstance(store, ExpiringStore)
        await store.put_traces([make_trace("a", now_ms, incidents=("I1",)),
                                make_trace("b", now_ms)])
        await store.add_records([make_record("a", now_ms)])
        assert await store.purge_expired() == 0
        await asyncio.sleep(1.2)
        assert await store.purge_expired() == 3
        assert await store.purge_expired() == 0
        assert (await store.search_traces(TraceQuery(incident="I1"))).items == []
    finally:
        await store.close()


@pytest.mark.integration
async def test_redis_keys_of_a_model_share_one_hash_slot(redis_url: str, unique_prefix: str,
                                                         now_ms: int) -> None:
    store = open_trace_store(redis_url, key_prefix=unique_prefix, trace_ttl_s=60,
                             record_ttl_s=60)
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        await store.put_traces([
            make_trace("r-1", now_ms, version="1", reason="canary", incidents=("INC1",)),
            make_trace("r-2", now_ms, version="2", reason=None),
        ])
        await store.add_records([make_record("r-1", now_ms), make_record("r-3", now_ms)])
        head = f"{unique_prefix}:{{credit}}:"
        tagged = [key async for key in client.scan_iter(match=f"{head}*")]
        assert sorted(key.decode().removeprefix(head) for key in tagged) == [
            "ix:all", "ix:i:INC1", "ix:r:canary", "ix:v:1", "ix:v:2", "ix:vr:1:canary",
            "r:r-1", "r:r-3", "rx:all", "s:r-1", "s:r-3", "t:r-1", "t:r-2"]
        assert {key_slot(key) for key in tagged} == {key_slot(b"credit")}
        lookup = await client.get(f"{unique_prefix}:rid:r-1")
        assert lookup == b"credit"
    finally:
        await store.close()
        await client.aclose()
        await _delete_prefix(redis_url, unique_prefix)


@pytest.mark.integration
async def test_redis_search_drops_index_members_of_vanished_traces(
        redis_url: str, unique_prefix: str, now_ms: int) -> None:
    store = open_trace_store(redis_url, key_prefix=unique_prefix, trace_ttl_s=60,
                             record_ttl_s=60)
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        await store.put_traces([make_trace(f"r{i}", now_ms - i) for i in range(5)])
        await client.delete(f"{unique_prefix}:{{credit}}:t:r1")  # as if it had expired
        for query in (TraceQuery(model="credit"), TraceQuery()):
            page = await store.search_traces(query)
            assert [t.request_id for t in page.items] == ["r0", "r2", "r3", "r4"]
        assert await client.zscore(f"{unique_prefix}:{{credit}}:ix:all", "r1") is None
        assert await client.zscore(f"{unique_prefix}:ix:all", "r1") is None
    finally:
        await store.close()
        await client.aclose()
        await _delete_prefix(redis_url, unique_prefix)
