"""The job stream on a real Redis: group delivery, reclaim, dead letters, lag and bounds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis

from storage.queue import RedisStream, StreamKeys
from storage.redis_client import open_redis_client

pytestmark = pytest.mark.integration


@pytest.fixture
async def stream(redis_url: str, unique_prefix: str) -> AsyncIterator[RedisStream]:
    client = open_redis_client(redis_url)
    queue = RedisStream(client, StreamKeys.named(unique_prefix, "explain"), group="workers",
                        max_length=1000, dead_max_length=100)
    await queue.ensure_group()
    yield queue
    await client.aclose()
    sync = redis.Redis.from_url(redis_url)
    for key in sync.scan_iter(f"{unique_prefix}*", count=1000):
        sync.delete(key)
    sync.close()


def _jobs(n: int) -> list[dict[str, str]]:
    return [{"request_id": f"r-{i}"} for i in range(n)]


async def test_each_entry_goes_to_one_consumer_until_acknowledged(stream: RedisStream) -> None:
    await stream.ensure_group()  # a second call is harmless
    await stream.add(_jobs(10))
    first = await stream.read("a", count=6, block_ms=100)
    second = await stream.read("b", count=10, block_ms=100)
    assert [d.fields["request_id"] for d in first + second] == [f"r-{i}" for i in range(10)]
    assert all(d.deliveries == 1 for d in first + second)
    stats = await stream.stats()
    assert (stats.length, stats.pending, stats.lag) == (10, 10, 0)
    await stream.ack([d.entry_id for d in first])
    assert (await stream.stats()).pending == 4
    assert await stream.read("a", count=10, block_ms=50) == []


async def test_idle_entries_are_reclaimed_with_their_delivery_count(stream: RedisStream) -> None:
    await stream.add(_jobs(3))
    held = await stream.read("dead-worker", count=3, block_ms=100)
    await stream.record_error(held[0].entry_id, "ExplainerError: boom", transient=False)
    assert (await stream.reclaim("b", min_idle_ms=60_000, count=10)).deliveries == []
    await asyncio.sleep(0.15)
    taken = await stream.reclaim("b", min_idle_ms=100, count=10)
    assert [d.entry_id for d in taken.deliveries] == [d.entry_id for d in held]
    assert all(d.deliveries == 2 for d in taken.deliveries)
    assert taken.errors == {held[0].entry_id: "ExplainerError: boom"}


async def test_dead_letter_moves_the_entry_with_its_error(stream: RedisStream) -> None:
    await stream.add(_jobs(2))
    poison, good = await stream.read("a", count=2, block_ms=100)
    await stream.dead_letter(poison, error="SealBroken: cannot open", consumer="a")
    stats = await stream.stats()
    assert (stats.pending, stats.dead_letters) == (1, 1)
    (dead,) = await stream.dead_letters(10)
    assert dead.fields["request_id"] == "r-0"
    assert dead.fields["error"] == "SealBroken: cannot open"
    assert dead.fields["entry_id"] == poison.entry_id
    assert await stream.requeue_dead([dead.entry_id]) == 1
    (again,) = await stream.read("a", count=5, block_ms=100)
    assert again.fields == {"request_id": "r-0"}
    assert (await stream.stats()).dead_letters == 0
    await stream.ack([good.entry_id, again.entry_id])


async def test_lag_counts_undelivered_entries_and_their_age(stream: RedisStream) -> None:
    await stream.add(_jobs(5))
    await asyncio.sleep(0.05)
    stats = await stream.stats()
    assert stats.lag == 5 and stats.backlog == 5
    assert stats.oldest_undelivered_age_s >= 0.05
    await stream.read("a", count=2, block_ms=100)
    stats = await stream.stats()
    assert (stats.lag, stats.pending, stats.backlog) == (3, 2, 5)


async def test_stream_length_stays_near_its_bound(redis_url: str, unique_prefix: str,
                                                  stream: RedisStream) -> None:
    client = open_redis_client(redis_url)
    small = RedisStream(client, StreamKeys.named(unique_prefix, "small"), group="g",
                        max_length=100, dead_max_length=10)
    for _ in range(10):
        await small.add(_jobs(100))
    length = (await small.stats()).length
    # MAXLEN ~ trims whole macro nodes (100 entries each by default): at most one extra node.
    assert 100 <= length <= 200
    await client.aclose()


async def test_consumers_holding_nothing_can_be_forgotten(stream: RedisStream) -> None:
    await stream.add(_jobs(2))
    (held,) = await stream.read("a", count=1, block_ms=100)
    (done,) = await stream.read("b", count=1, block_ms=100)
    await stream.ack([done.entry_id])
    assert not await stream.forget_consumer("a")
    assert await stream.forget_consumer("b")
    await stream.ack([held.entry_id])
    assert await stream.forget_consumer("a")
    assert (await stream.stats()).consumers == 0
