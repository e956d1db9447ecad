"""An archiver told to stop with a batch still buffered writes it before it leaves."""

from __future__ import annotations

import asyncio
import gzip
from collections import Counter
from pathlib import Path

import httpx
import orjson
import pytest

from service.app import create_app
from service.runtime import Runtime
from service.settings import ArchiveSettings, QueueSettings, SamplingSettings, Settings
from service.worker.archive_loop import Archiver, ArchiverOptions
from storage.archive.writer import ArchiveWriter, Backoff
from tests.integration.scale_out_support import CreditModel, bounded, clear_prefix, record_from

pytestmark = pytest.mark.integration


async def test_stopping_flushes_the_buffered_batch_and_acknowledges_it(
        credit: CreditModel, redis_url: str, unique_prefix: str, tmp_path: Path) -> None:
    root = tmp_path / "archive"
    settings = Settings(
        data_dir=tmp_path / "data", artifacts=str(credit.artifacts), traces=redis_url,
        keyring=credit.keyring, redis_key_prefix=unique_prefix, auth="off",
        sampling=SamplingSettings(rate=1.0), queue=QueueSettings(stats_interval_s=0.2),
        archive=ArchiveSettings(enabled=True, uri=root.as_uri()))
    app = create_app(settings)
    ids = [f"as-{i}" for i in range(10)]
    try:
        async with app.router.lifespan_context(app):
            runtime: Runtime = app.state.runtime
            scale_out = runtime.scale_out
            assert scale_out is not None and scale_out.archive_feed is not None
            assert scale_out.archive_store is not None and scale_out.archive_index is not None
            feed = scale_out.archive_feed
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://a") as http:
                await http.post("/v1/predictions", json={"records": [
                    record_from(credit.frame, i, rid) for i, rid in enumerate(ids)]})
            for _ in range(200):  # the feed entries are sent in the background
                if (await feed.stats()).lag == 2 * len(ids):
                    break
                await asyncio.sleep(0.05)
            writer = ArchiveWriter(scale_out.archive_store, scale_out.archive_index,
                                   backoff=Backoff(0.05, 0.2))
            # Neither the batch size nor the flush interval is reached before the stop.
            archiver = Archiver(runtime, feed, writer, scale_out.metrics, consumer="leaving",
                                options=ArchiverOptions(1000, 3600, 100, 60_000))
            stop = asyncio.Event()
            task = asyncio.create_task(archiver.run(stop))
            for _ in range(200):
                if (await feed.stats()).pending == 2 * len(ids):
                    break
                await asyncio.sleep(0.05)
            assert not any(root.rglob("*.jsonl.gz")), "flushed before the stop"
            stop.set()
            await bounded(task, seconds=60, what="the archiver to stop")
            stats = await feed.stats()
    finally:
        clear_prefix(redis_url, unique_prefix)
    assert (stats.pending, stats.lag, stats.consumers) == (0, 0, 0)
    lines: dict[str, Counter[str]] = {"traces": Counter(), "records": Counter()}
    for path in root.rglob("*.jsonl.gz"):
        kind = path.relative_to(root).parts[0]
        for line in gzip.decompress(path.read_bytes()).splitlines():
            lines[kind][orjson.loads(line)["request_id"]] += 1
    assert lines == {"traces": Counter(dict.fromkeys(ids, 1)),
                     "records": Counter(dict.fromkeys(ids, 1))}
