"""One contract for every DriftWindowStore: SQLite and Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio
from redis.crc import key_slot

from storage.drift.records import BucketRef, WindowIncrement, WindowKey
from storage.drift.redis import RedisDriftWindowStore
from storage.drift.sqlite import SqliteDriftWindowStore
from storage.drift_factory import open_drift_store
from storage.protocols import DriftWindowStore, ExpiringStore

Store = SqliteDriftWindowStore | RedisDriftWindowStore
OpenStore = Callable[..., Store]

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("redis", id="redis", marks=pytest.mark.integration),
]
HOUR_MS = 3_600_000


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _delete_prefix(url: str, prefix: str) -> None:
    client = redis.asyncio.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def open_store(backend: str, request: pytest.FixtureRequest, tmp_path: Path,
                     unique_prefix: str) -> AsyncIterator[OpenStore]:
    """Open stores of the backend; several share one database, like replicas."""
    url = (str(request.getfixturevalue("redis_url")) if backend == "redis"
           else f"sqlite:///{tmp_path}/traces.db")
    opened: list[Store] = []

    def make(*, retention_s: int = 86400) -> Store:
        store = open_drift_store(url, key_prefix=unique_prefix, retention_s=retention_s)
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


def _bucket(offset: int = 0, resolution_s: int = 300) -> BucketRef:
    now = time.time_ns() // 1_000_000
    size = resolution_s * 1000
    return BucketRef(resolution_s, (now // size) * size + offset * size)


KEY = WindowKey("credit", "3")


def test_both_backends_satisfy_the_protocol(store: Store) -> None:
    typed: DriftWindowStore = store
    assert typed.backend in ("sqlite", "redis")


async def test_counts_sum_across_increments_and_buckets(store: Store) -> None:
    first, second = _bucket(-1), _bucket(0)
    await store.add_window_counts([
        WindowIncrement(KEY, first, counts={"n": 3, "0:1": 2}, sums={"0:sum": 1.25}),
        WindowIncrement(KEY, second, counts={"n": 4, "0:1": 1, "0:m": 1},
                        sums={"0:sum": 0.5}),
    ])
    await store.add_window_counts([WindowIncrement(KEY, second, counts={"n": 1})])
    merged = await store.read_window_counts(KEY, [first, second])
    assert merged == {"n": 8.0, "0:1": 3.0, "0:m": 1.0, "0:sum": pytest.approx(1.75)}
    assert await store.read_window_counts(KEY, [first]) == {
        "n": 3.0, "0:1": 2.0, "0:sum": pytest.approx(1.25)}


async def test_maxima_keep_the_largest_value_in_any_order(store: Store) -> None:
    bucket, other = _bucket(0), _bucket(-1)
    await store.add_window_counts([WindowIncrement(KEY, bucket, maxima={"t": 500, "2:t": 70})])
    await store.add_window_counts([WindowIncrement(KEY, bucket, maxima={"t": 300, "2:t": 90})])
    await store.add_window_counts([WindowIncrement(KEY, other, maxima={"t": 400})])
    merged = await store.read_window_counts(KEY, [bucket, other])
    assert merged == {"t": 500.0, "2:t": 90.0}


async def test_windows_of_other_versions_segments_and_resolutions_are_separate(
        store: Store) -> None:
    bucket = _bucket(0)
    keys = [KEY, WindowKey("credit", "4"), WindowKey("credit", "3", "region:eu-west-1"),
            WindowKey("fraud", "3")]
    await store.add_window_counts([
        WindowIncrement(key, bucket, counts={"n": i + 1}) for i, key in enumerate(keys)])
    for i, key in enumerate(keys):
        assert await store.read_window_counts(key, [bucket]) == {"n": float(i + 1)}
    hourly = BucketRef(3600, (bucket.start_ms // HOUR_MS) * HOUR_MS)
    assert await store.read_window_counts(KEY, [hourly]) == {}
    assert await store.read_window_counts(KEY, []) == {}


async def test_replicas_writing_concurrently_lose_no_count_and_keep_the_max(
        open_store: OpenStore) -> None:
    replicas = [open_store(), open_store(), open_store()]
    bucket = _bucket(0)
    writes = [
        replicas[i % 3].add_window_counts([WindowIncrement(
            KEY, bucket, counts={"n": 1, "5:3": 2}, sums={"5:sum": 0.5},
            maxima={"5:t": 1000 + i})])
        for i in range(60)
    ]
    await asyncio.gather(*writes)
    merged = await replicas[0].read_window_counts(KEY, [bucket])
    assert merged == {"n": 60.0, "5:3": 120.0, "5:sum": pytest.approx(30.0), "5:t": 1059.0}


async def test_expired_buckets_read_as_empty(open_store: OpenStore) -> None:
    store = open_store(retention_s=1)
    old = BucketRef(300, 0)  # the epoch: expired long ago at any retention
    await store.add_window_counts([WindowIncrement(KEY, old, counts={"n": 5})])
    assert await store.read_window_counts(KEY, [old]) == {}


async def test_segments_are_admitted_up_to_the_cap_and_known_ones_stay(
        open_store: OpenStore) -> None:
    store, replica = open_store(), open_store()
    first = await store.admit_segments("credit", "region", ["eu", "us", "eu"], cap=3)
    assert first == {"eu", "us"}
    racing = await asyncio.gather(*[
        (store if i % 2 else replica).admit_segments("credit", "region", [f"r{i}"], cap=3)
        for i in range(8)])
    assert sum(len(admitted) for admitted in racing) == 1
    again = await replica.admit_segments("credit", "region", ["us", "ap", "eu"], cap=3)
    assert again == {"us", "eu"}
    assert await store.admit_segments("credit", "cohort", ["canary"], cap=3) == {"canary"}
    assert await store.admit_segments("fraud", "region", ["ap"], cap=3) == {"ap"}
    assert await store.admit_segments("credit", "region", [], cap=3) == frozenset()


async def test_each_label_is_claimed_once_across_replicas(open_store: OpenStore) -> None:
    store, replica = open_store(), open_store()
    assert await store.claim_labels("credit", ["a", "b", "a"]) == [True, True, False]
    assert await replica.claim_labels("credit", ["b", "c"]) == [False, True]
    assert await replica.claim_labels("fraud", ["a"]) == [True]
    racing = await asyncio.gather(*[
        (store if i % 2 else replica).claim_labels("credit", ["z"]) for i in range(6)])
    assert sorted(r[0] for r in racing) == [False] * 5 + [True]
    assert await store.claim_labels("credit", []) == []


@pytest.mark.integration
async def test_redis_keys_of_one_model_share_a_slot_and_expire(
        redis_url: str, unique_prefix: str) -> None:
    store = open_drift_store(redis_url, key_prefix=unique_prefix, retention_s=600)
    bucket = _bucket(0)
    try:
        key = WindowKey("cr{ed}it:x", "3", "region:eu")
        await store.add_window_counts([WindowIncrement(key, bucket, counts={"n": 1})])
        await store.admit_segments("cr{ed}it:x", "region", ["eu"], cap=5)
        await store.claim_labels("cr{ed}it:x", ["r-1"])
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            keys = [k async for k in client.scan_iter(match=f"{unique_prefix}:*")]
            assert len(keys) == 3
            assert len({key_slot(k) for k in keys}) == 1
            assert isinstance(store, RedisDriftWindowStore)
            expiry = await client.pexpiretime(store.bucket_key(key, bucket))
            assert expiry == bucket.start_ms + (300 + 600) * 1000
        finally:
            await client.aclose()
    finally:
        await store.close()
        await _delete_prefix(redis_url, unique_prefix)


async def test_sqlite_purge_deletes_expired_rows(tmp_path: Path) -> None:
    store = open_drift_store(f"sqlite:///{tmp_path}/t.db", retention_s=1)
    try:
        assert isinstance(store, ExpiringStore)
        await store.add_window_counts([
            WindowIncrement(KEY, BucketRef(300, 0), counts={"n": 1, "0:1": 1}),  # expired
            WindowIncrement(KEY, _bucket(0), counts={"n": 1})])
        assert await store.purge_expired() == 1
        assert await store.read_window_counts(KEY, [_bucket(0)]) == {"n": 1.0}
    finally:
        await store.close()
