"""Two replicas on one Redis share the explanation budget of a model."""

from __future__ import annotations

import time
from contextlib import AsyncExitStack
from pathlib import Path

import pandas as pd
import pytest
import redis.asyncio
from prometheus_client import CollectorRegistry

from service.sampling.engine import SamplingEngine, SamplingMetrics
from service.sampling.policy import default_policy_document
from service.sampling.store import PolicyStore
from service.settings import SamplingSettings, Settings
from service.validation import Envelope
from storage.artifacts.local import LocalArtifactStore
from storage.budget_factory import open_explanation_budget
from storage.keyring import create_keyring_file
from tests.api.conftest import record_from
from tests.api.incident_support import isolated, running_app

pytestmark = pytest.mark.integration

RATE = 0.2
BURST = 5


async def test_two_replicas_together_stay_within_one_budget(
        published_settings: Settings, credit_frame: pd.DataFrame, tmp_path: Path,
        redis_url: str, unique_prefix: str) -> None:
    keyring = tmp_path / "keyring.yaml"
    create_keyring_file(keyring)
    settings = isolated(
        published_settings, tmp_path, traces=redis_url, redis_key_prefix=unique_prefix,
        keyring=keyring, sampling=SamplingSettings(rate=1.0, budget_per_s=RATE,
                                                   budget_burst=BURST))
    sampled = {"a": 0, "b": 0}
    deferred = {"a": 0, "b": 0}
    try:
        async with AsyncExitStack() as stack:
            replicas = {name: await stack.enter_async_context(running_app(settings))
                        for name in ("a", "b")}
            started = time.monotonic()
            for i in range(40):
                name = "ab"[i % 2]
                body = {"records": [record_from(credit_frame, i, f"sb-{i}")]}
                answer = (await replicas[name].post("/v1/predictions", json=body)).json()
                [record] = answer["records"]
                sampled[name] += record["sampled"]
                deferred[name] += bool(record.get("deferred"))
            elapsed = time.monotonic() - started
    finally:
        client = redis.asyncio.Redis.from_url(redis_url)
        keys = [k async for k in client.scan_iter(match=f"{unique_prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    total = sum(sampled.values())
    # One bucket: its burst plus what it refilled meanwhile. Two per-replica buckets
    # would have granted 2 × BURST.
    assert BURST <= total <= BURST + RATE * elapsed + 1
    assert total < 2 * BURST
    assert total + sum(deferred.values()) == 40
    assert deferred["a"] > 0 and deferred["b"] > 0


async def test_a_budget_outage_falls_back_to_the_replicas_own_bucket(tmp_path: Path) -> None:
    shared = open_explanation_budget("redis://127.0.0.1:1/0")
    assert shared is not None
    document = default_policy_document(SamplingSettings(rate=1.0, budget_per_s=0.01,
                                                        budget_burst=3))
    registry = CollectorRegistry()
    metrics = SamplingMetrics(registry)
    engine = SamplingEngine(PolicyStore(LocalArtifactStore(tmp_path), max_counterfactuals=1),
                            document, metrics, shared=shared)
    records = [(Envelope(request_id=f"o-{i}", model="credit", version="1", features={},
                         prediction={"score": 0.9}, timestamp=None, event_ms=0, action=None,
                         context={}), "credit", "1") for i in range(5)]
    decisions = await engine.decide_all(records)
    await engine.close()
    assert [d.sampled for d in decisions] == [True, True, True, False, False]
    assert all(d.deferred for d in decisions[3:])
    assert registry.get_sample_value("whylens_sampling_budget_errors_total",
                                     {"model": "credit"}) == 1
