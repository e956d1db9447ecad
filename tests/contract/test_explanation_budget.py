"""The shared explanation budget on real Redis: one bucket per model for every replica."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from storage.budget_factory import open_explanation_budget
from storage.errors import StoreUnavailable
from storage.protocols import ExplanationBudget

pytestmark = pytest.mark.integration


@pytest.fixture
async def replicas(redis_url: str, unique_prefix: str
                   ) -> AsyncIterator[tuple[ExplanationBudget, ExplanationBudget]]:
    """Two budgets with their own clients, as two replicas would have."""
    first = open_explanation_budget(redis_url, key_prefix=unique_prefix)
    second = open_explanation_budget(redis_url, key_prefix=unique_prefix)
    assert first is not None and second is not None
    yield first, second
    await first.close()
    await second.close()
    client = redis.asyncio.Redis.from_url(redis_url)
    keys = [k async for k in client.scan_iter(match=f"{unique_prefix}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_replicas_draw_from_one_bucket_per_model(
        replicas: tuple[ExplanationBudget, ExplanationBudget]) -> None:
    first, second = replicas
    # A rate this low adds no whole token while the test runs.
    slow = {"rate": 0.001, "capacity": 5.0}
    assert await first.take_tokens("credit", 3, **slow) == 3
    assert await second.take_tokens("credit", 3, **slow) == 2
    assert await first.take_tokens("credit", 1, **slow) == 0
    # Another model has its own bucket.
    assert await second.take_tokens("fraud", 10, **slow) == 5


async def test_concurrent_takes_never_grant_more_than_the_bucket_holds(
        replicas: tuple[ExplanationBudget, ExplanationBudget]) -> None:
    first, second = replicas
    takes = [budget.take_tokens("credit", 1, rate=0.001, capacity=20.0)
             for _ in range(30) for budget in (first, second)]
    assert sum(await asyncio.gather(*takes)) == 20


async def test_the_bucket_refills_at_its_rate_and_expires_once_full(
        replicas: tuple[ExplanationBudget, ExplanationBudget], redis_url: str,
        unique_prefix: str) -> None:
    first, _ = replicas
    assert await first.take_tokens("credit", 2, rate=20.0, capacity=2.0) == 2
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        key = f"{unique_prefix}:{{credit}}:budget"
        # Empty bucket of 2 at 20/s is full again after 100 ms: no key is kept much longer.
        assert 0 < await client.pttl(key) <= 1100
        await asyncio.sleep(0.3)
        assert await first.take_tokens("credit", 5, rate=20.0, capacity=2.0) == 2
        await asyncio.sleep(1.3)
        assert await client.exists(key) == 0
    finally:
        await client.aclose()


async def test_an_unreachable_server_is_a_store_error() -> None:
    budget = open_explanation_budget("redis://127.0.0.1:1/0", key_prefix="wl")
    assert budget is not None
    with pytest.raises(StoreUnavailable):
        await budget.take_tokens("credit", 1, rate=1.0, capacity=1.0)
    await budget.close()


def test_local_stores_have_no_shared_budget() -> None:
    assert open_explanation_budget("sqlite:///x.db") is None
