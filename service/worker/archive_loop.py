"""The archiver: batches of the archive feed written to object storage, then acknowledged.

A batch is acknowledged only after every object PUT and the index update succeeded, so
an archiver that dies or an object store that fails loses nothing: the entries stay
pending and are written again (under the same batch name) by whoever takes them over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from service.model_retention import RetentionLookup
from service.runtime import Runtime
from service.scale_out_metrics import ScaleOutMetrics
from service.worker.explain_loop import wait_or_stop
from storage.archive.feed import RECORD, TRACE
from storage.archive.layout import ArchiveLine, batch_name, build_objects, partition_expiry_ms
from storage.archive.writer import ArchiveWriter
from storage.errors import StoreUnavailable
from storage.queue.stream import Delivery, RedisStream

logger = logging.getLogger(__name__)

STREAM = "archive"
# Concurrent store reads while collecting a batch's bodies.
FETCH_CONCURRENCY = 32


@dataclass(frozen=True, slots=True)
class ArchiverOptions:
    """Batch size and timing of the archiver."""

    batch_records: int
    flush_interval_s: float
    block_ms: int
    claim_idle_ms: int
    shutdown_grace_s: float = 10.0


class Archiver:
    """One consumer of the archive feed."""

    def __init__(self, runtime: Runtime, feed: RedisStream, writer: ArchiveWriter,
                 metrics: ScaleOutMetrics, *, consumer: str, options: ArchiverOptions) -> None:
        self.runtime = runtime
        self.feed = feed
        self.writer = writer
        self.metrics = metrics
        self.consumer = consumer
        self.options = options
        self._buffer: dict[str, Delivery] = {}
        self._first_at: float | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Archive until `stop`; then write what is buffered within the grace period."""
        failures = 0
        next_claim = 0.0
        while not stop.is_set():
            try:
                if failures or not next_claim:
                    await self.feed.ensure_group()
                if time.monotonic() >= next_claim:
                    await self._reclaim()
                    next_claim = time.monotonic() + max(0.2, self.options.claim_idle_ms / 2000)
                room = self.options.batch_records - len(self._buffer)
                if room > 0:
                    self._add(await self.feed.read(self.consumer, count=room,
                                                   block_ms=self.options.block_ms))
                if self._due():
                    await self.flush(stop)
                failures = 0
            except StoreUnavailable as exc:
                failures += 1
                self.runtime.metrics.store_errors.labels(exc.backend).inc()
                delay = min(10.0, 0.2 * 2 ** min(failures, 6))
                logger.warning("archiver %s: %s; retrying in %.1f s", self.consumer, exc, delay)
                await wait_or_stop(stop, delay)
        await self._flush_on_shutdown()

    async def _flush_on_shutdown(self) -> None:
        if not self._buffer:
            return
        grace = asyncio.Event()
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.options.shutdown_grace_s, grace.set)
        try:
            await self.flush(grace)
        except StoreUnavailable as exc:
            logger.warning("archiver %s stopping with %d entries unwritten (left pending for "
                           "another archiver): %s", self.consumer, len(self._buffer), exc)
        finally:
            timer.cancel()
        with contextlib.suppress(StoreUnavailable):
            await self.feed.forget_consumer(self.consumer)

    def _add(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            self._buffer.setdefault(delivery.entry_id, delivery)
        if self._buffer and self._first_at is None:
            self._first_at = time.monotonic()

    def _due(self) -> bool:
        if not self._buffer or self._first_at is None:
            return False
        return (len(self._buffer) >= self.options.batch_records
                or time.monotonic() - self._first_at >= self.options.flush_interval_s)

    async def _reclaim(self) -> None:
        taken = await self.feed.reclaim(self.consumer, min_idle_ms=self.options.claim_idle_ms,
                                        count=self.options.batch_records)
        if taken.vanished:
            self.metrics.jobs_vanished.labels(STREAM).inc(len(taken.vanished))
            logger.error("%d archive feed entries were trimmed before being archived",
                         len(taken.vanished))
        if taken.deliveries:
            self.metrics.jobs_reclaimed.labels(STREAM).inc(len(taken.deliveries))
            self._add(taken.deliveries)

    async def flush(self, stop: asyncio.Event) -> bool:
        """Write the buffered entries as one batch; True when written and acknowledged."""
        deliveries = list(self._buffer.values())
        lines = await self._collect(deliveries)
        objects = build_objects(lines, batch=batch_name([d.entry_id for d in deliveries]))
        # A fresh lookup per batch: a changed manifest or setting applies to the next one.
        retention = RetentionLookup(self.runtime)
        until = {obj.key: partition_expiry_ms(
                     obj.day, (await retention.of(obj.model)).archive_traces_s)
                 for obj in objects if obj.kind == "traces"}
        if not await self.writer.write(objects, stop=stop, index_until_ms=until):
            return False
        await self.feed.ack([d.entry_id for d in deliveries])
        self._buffer.clear()
        self._first_at = None
        self.metrics.archive_objects.inc(len(objects))
        for line in lines:
            self.metrics.archive_lines.labels(line.kind).inc()
        logger.info("archived %d traces and records in %d objects", len(lines), len(objects),
                    extra={"event": "archive_batch", "objects": [o.key for o in objects]})
        return True

    async def _collect(self, deliveries: list[Delivery]) -> list[ArchiveLine]:
        wanted: dict[tuple[str, str], Delivery] = {}
        for delivery in deliveries:
            kind, request_id = delivery.fields.get("k", ""), delivery.fields.get("id", "")
            if kind in (TRACE, RECORD) and request_id:
                wanted[(kind, request_id)] = delivery
            else:
                logger.error("archive feed entry %s is malformed; skipped", delivery.entry_id)
        gate = asyncio.Semaphore(FETCH_CONCURRENCY)

        async def fetch(kind: str, request_id: str) -> ArchiveLine | None:
            async with gate:
                if kind == TRACE:
                    trace = await self.runtime.traces.get_trace(request_id)
                    return None if trace is None else ArchiveLine(
                        "traces", request_id, trace.model, trace.event_ms, trace.body)
                record = await self.runtime.records.get_record(request_id)
                return None if record is None else ArchiveLine(
                    "records", request_id, record.model, record.event_ms, record.body)

        keys = list(wanted)
        found = await asyncio.gather(*(fetch(kind, rid) for kind, rid in keys))
        lines = []
        for (kind, request_id), line in zip(keys, found, strict=True):
            if line is None:
                self.metrics.archive_missing.labels(
                    "traces" if kind == TRACE else "records").inc()
                logger.warning("%s %s expired before it was archived",
                               "trace" if kind == TRACE else "record", request_id)
            else:
                lines.append(line)
        return lines
