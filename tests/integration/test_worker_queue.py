"""Queue mode end to end in one process: ingest enqueues, a worker explains, idempotently."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import orjson
import pytest

from service.app import build_runtime, create_app
from service.runtime import Runtime
from service.settings import QueueSettings, SamplingSettings, Settings
from service.worker.explain_loop import ExplainWorker, WorkerOptions
from service.worker.process import worker_settings
from storage.queue import ExplainJob
from storage.records import StoredRecord
from tests.integration.scale_out_support import (
    CreditModel,
    bounded,
    clear_prefix,
    record_from,
)

pytestmark = pytest.mark.integration


def _settings(credit: CreditModel, redis_url: str, prefix: str, tmp: Path,
              mode: str) -> Settings:
    return Settings(
        data_dir=tmp / f"data-{mode}", artifacts=str(credit.artifacts), traces=redis_url,
        keyring=credit.keyring, redis_key_prefix=prefix, auth="off", explain_mode=mode,
        sampling=SamplingSettings(rate=1.0),
        queue=QueueSettings(claim_idle_ms=300, block_ms=100, batch_size=16, max_deliveries=3,
                            stats_interval_s=0.2))


@pytest.fixture
async def env(credit: CreditModel, redis_url: str, unique_prefix: str,
              tmp_path: Path) -> AsyncIterator[tuple[Settings, httpx.AsyncClient, Runtime]]:
    settings = _settings(credit, redis_url, unique_prefix, tmp_path, "queue")
    app = create_app(settings)
    worker_runtime = await build_runtime(worker_settings(settings), serving=False)
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://w") as http:
            yield settings, http, worker_runtime
    finally:
        await bounded(lifespan.__aexit__(None, None, None), seconds=60, what="app shutdown")
        await bounded(_close(worker_runtime), seconds=60, what="worker runtime shutdown")
        clear_prefix(redis_url, unique_prefix)


async def _close(runtime: Runtime) -> None:
    assert runtime.scale_out is not None
    await runtime.scale_out.close()
    await runtime.traces.close()
    await runtime.drift.close()
    await runtime.audit.close()


async def _work_until(runtime: Runtime, done: Callable[[], Awaitable[bool]]) -> ExplainWorker:
    scale_out = runtime.scale_out
    assert scale_out is not None and scale_out.jobs is not None
    worker = ExplainWorker(runtime, scale_out.jobs, scale_out.metrics, consumer="w-test",
                           options=WorkerOptions.from_settings(runtime.settings.queue))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        for _ in range(300):
            if await done():
                return worker
            await asyncio.sleep(0.05)
        raise AssertionError("the worker did not finish in time")
    finally:
        stop.set()
        await task


def _backlog_empty(runtime: Runtime) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        assert runtime.scale_out is not None and runtime.scale_out.jobs is not None
        stats = await runtime.scale_out.jobs.stats()
        return stats.backlog == 0
    return check


async def test_queue_mode_enqueues_and_the_worker_stores_the_inline_trace(
        env: tuple[Settings, httpx.AsyncClient, Runtime], credit: CreditModel,
        redis_url: str, tmp_path: Path) -> None:
    settings, http, worker_runtime = env
    records = [record_from(credit.frame, i, f"q-{i}") for i in range(20)]
    answer = (await http.post("/v1/predictions", json={"records": records})).json()
    assert all(r["sampled"] and r["trace_url"] == f"/v1/traces/q-{i}"
               for i, r in enumerate(answer["records"]))
    assert (await http.get("/v1/traces/q-0")).status_code == 404  # queued, not explained
    assert worker_runtime.scale_out is not None and worker_runtime.scale_out.jobs is not None
    assert (await worker_runtime.scale_out.jobs.stats()).lag == 20
    await _work_until(worker_runtime, _backlog_empty(worker_runtime))
    queued = [(await http.get(f"/v1/traces/q-{i}")).json() for i in range(20)]
    # The same records explained inline by a separate replica give the same explanations.
    inline_settings = _settings(credit, redis_url, settings.redis_key_prefix + "-inline",
                                tmp_path, "inline")
    app = create_app(inline_settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://i") as inline:
                await inline.post("/v1/predictions", json={"records": records})
                expected = [(await inline.get(f"/v1/traces/q-{i}")).json() for i in range(20)]
    finally:
        clear_prefix(redis_url, inline_settings.redis_key_prefix)
    for ours, theirs in zip(queued, expected, strict=True):
        assert ours["explanation"]["attributions"] == pytest.approx(
            theirs["explanation"]["attributions"], rel=1e-9, abs=1e-12)
        assert ours["features"] == theirs["features"]
        assert ours["sampling"] == theirs["sampling"]


async def test_jobs_are_idempotent_unless_they_ask_to_reexplain(
        env: tuple[Settings, httpx.AsyncClient, Runtime], credit: CreditModel) -> None:
    _, http, worker_runtime = env
    await http.post("/v1/predictions", json=record_from(credit.frame, 0, "idem-1"))
    await _work_until(worker_runtime, _backlog_empty(worker_runtime))
    first = (await http.get("/v1/traces/idem-1")).json()
    assert worker_runtime.scale_out is not None and worker_runtime.scale_out.jobs is not None
    jobs = worker_runtime.scale_out.jobs
    again = ExplainJob("idem-1", "credit", "1", "sampled", "default", 1_000)
    await jobs.add([again.to_fields(), again.to_fields()])
    worker = await _work_until(worker_runtime, _backlog_empty(worker_runtime))
    assert (await http.get("/v1/traces/idem-1")).json() == first
    skipped = worker.metrics.jobs.labels("skipped")._value.get()
    assert skipped == 1  # both copies answered by one check
    await jobs.add([ExplainJob("idem-1", "credit", "1", "sampled", "default", 1_000,
                               reexplain=True).to_fields()])
    await _work_until(worker_runtime, _backlog_empty(worker_runtime))
    redone = (await http.get("/v1/traces/idem-1")).json()
    assert redone["received_at"] == "1970-01-01T00:00:01.000Z"
    assert redone["explanation"]["attributions"] == first["explanation"]["attributions"]


async def test_a_failing_job_is_retried_then_dead_lettered_with_its_error(
        env: tuple[Settings, httpx.AsyncClient, Runtime], credit: CreditModel) -> None:
    _, http, worker_runtime = env
    sealer = worker_runtime.sealer
    # A logged record of a version that cannot be loaded: every attempt fails the same way.
    stranded = StoredRecord(
        request_id="poison-1", model="credit", version="9", event_ms=1, received_ms=1,
        sampled=True, reason="sampled", body=orjson.dumps({"prediction": {"score": 0.5}}),
        sealed_inputs=sealer.seal(b"{}", request_id="poison-1"))
    await worker_runtime.records.add_records([stranded])
    await http.post("/v1/predictions", json=record_from(credit.frame, 1, "fine-1"))
    scale_out = worker_runtime.scale_out
    assert scale_out is not None and scale_out.jobs is not None
    await scale_out.jobs.add([ExplainJob("poison-1", "credit", "9", "sampled", "default",
                                         1).to_fields(),
                              ExplainJob("gone-1", "credit", "1", "sampled", "default",
                                         1).to_fields()])

    async def two_dead() -> bool:
        assert scale_out is not None and scale_out.jobs is not None
        stats = await scale_out.jobs.stats()
        return stats.dead_letters == 2 and stats.backlog == 0

    worker = await _work_until(worker_runtime, two_dead)
    dead = {d.fields["request_id"]: d.fields for d in await scale_out.jobs.dead_letters(10)}
    assert dead["poison-1"]["deliveries"] == "3"
    assert "VersionUnknown" in dead["poison-1"]["error"]
    assert dead["gone-1"]["deliveries"] == "1"
    assert "record is gone" in dead["gone-1"]["error"]
    assert worker.metrics.jobs.labels("retried")._value.get() == 2
    assert (await http.get("/v1/traces/fine-1")).status_code == 200


async def test_queue_gauges_reach_the_api_metrics(
        env: tuple[Settings, httpx.AsyncClient, Runtime], credit: CreditModel) -> None:
    _, http, _ = env
    await http.post("/v1/predictions", json={"records": [
        record_from(credit.frame, i, f"m-{i}") for i in range(7)]})
    await asyncio.sleep(0.5)  # the stats task reads the stream every 0.2 s
    text = (await http.get("/metrics")).text
    assert 'whylens_queue_lag{stream="explain"} 7.0' in text
    assert "whylens_jobs_enqueued_total 7.0" in text


async def test_jobs_of_one_model_version_are_explained_in_one_batch_call(
        env: tuple[Settings, httpx.AsyncClient, Runtime], credit: CreditModel) -> None:
    _, http, worker_runtime = env
    ids = [f"b-{i}" for i in range(12)]
    await http.post("/v1/predictions", json={"records": [
        record_from(credit.frame, i, rid) for i, rid in enumerate(ids)]})
    await _work_until(worker_runtime, _backlog_empty(worker_runtime))
    traces = [(await http.get(f"/v1/traces/{rid}")).json() for rid in ids]
    assert {t["model"]["version"] for t in traces} == {"1"}
    method = traces[0]["explanation"]["method"]
    registry = worker_runtime.metrics.registry
    # The batch size (16) holds all 12 jobs: one read, one explainer call for all of them.
    assert registry.get_sample_value("whylens_explanations_total", {"method": method}) == 12
    assert registry.get_sample_value("whylens_explain_seconds_count", {"method": method}) == 1


async def test_a_backlog_above_the_high_water_mark_is_explained_inline(
        credit: CreditModel, redis_url: str, unique_prefix: str, tmp_path: Path) -> None:
    settings = _settings(credit, redis_url, unique_prefix, tmp_path, "queue")
    settings = settings.model_copy(update={"queue": settings.queue.model_copy(
        update={"max_length": 10, "high_water": 0.9})})
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            runtime: Runtime = app.state.runtime
            assert runtime.scale_out is not None and runtime.scale_out.jobs is not None
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://h") as http:
                first = [record_from(credit.frame, i, f"hw-{i}") for i in range(12)]
                await http.post("/v1/predictions", json={"records": first})
                for _ in range(100):  # the stats task notices the backlog (every 0.2 s)
                    if runtime.scale_out.backlog >= 9:
                        break
                    await asyncio.sleep(0.05)
                more = [record_from(credit.frame, i, f"hw-{i}") for i in range(12, 17)]
                await http.post("/v1/predictions", json={"records": more})
                # Above 90 % of the bound: explained in the request, not queued.
                codes = [(await http.get(f"/v1/traces/hw-{i}")).status_code for i in range(17)]
                stats = await runtime.scale_out.jobs.stats()
                text = (await http.get("/metrics")).text
    finally:
        clear_prefix(redis_url, unique_prefix)
    assert codes == [404] * 12 + [200] * 5
    assert stats.backlog == 12  # nothing trimmed unexplained
    assert "whylens_queue_overflow_total 5.0" in text
    assert "whylens_jobs_enqueued_total 12.0" in text
