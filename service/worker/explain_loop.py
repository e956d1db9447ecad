"""The explanation worker: jobs from the stream, explained in batches per model version.

Delivery is at least once and every step is idempotent by request ID: a job whose trace
exists is acknowledged without work (unless it asks to re-explain), a trace is stored
before its job is acknowledged, and jobs of a consumer that died are taken over once
idle for `claim_idle_ms`. A job that keeps failing is dead-lettered with its error after
`max_deliveries`; failures of a store (transient) never dead-letter a job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace

from service.counterfactuals import CounterfactualAsk
from service.ingest import explain_and_store, replay_envelope
from service.log_format import log_context
from service.runtime import Runtime
from service.scale_out_metrics import ScaleOutMetrics
from service.settings import QueueSettings
from service.trace_builder import TraceRequest
from storage.errors import StoreUnavailable
from storage.queue.jobs import ExplainJob, JobMalformed
from storage.queue.stream import TRANSIENT_PREFIX, Delivery, RedisStream

logger = logging.getLogger(__name__)

STREAM = "explain"
# Consumers holding nothing and silent this long are removed from the group listing.
PRUNE_IDLE_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How a worker reads, batches, reclaims and gives up."""

    batch_size: int
    block_ms: int
    claim_idle_ms: int
    max_deliveries: int

    @classmethod
    def from_settings(cls, queue: QueueSettings) -> WorkerOptions:
        """Take the options from the queue settings."""
        return cls(queue.batch_size, queue.block_ms, queue.claim_idle_ms, queue.max_deliveries)


@dataclass(slots=True)
class _Job:
    delivery: Delivery
    job: ExplainJob
    request: TraceRequest | None = None
    model: str = ""
    version: str = ""
    extra: list[str] = field(default_factory=list)


def describe(exc: BaseException) -> str:
    """The error text recorded for a failed job (exception messages never hold values)."""
    return f"{type(exc).__name__}: {exc}"


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Sleep, waking early when `stop` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


class ExplainWorker:
    """One consumer of the job stream."""

    def __init__(self, runtime: Runtime, stream: RedisStream, metrics: ScaleOutMetrics, *,
                 consumer: str, options: WorkerOptions) -> None:
        self.runtime = runtime
        self.stream = stream
        self.metrics = metrics
        self.consumer = consumer
        self.options = options
        self._claim_every_s = max(0.2, options.claim_idle_ms / 2000)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; the batch in hand is finished first."""
        failures = 0
        next_claim = 0.0
        next_prune = time.monotonic() + 60
        while not stop.is_set():
            try:
                if failures or not next_claim:
                    await self.stream.ensure_group()
                if time.monotonic() >= next_claim:
                    await self.reclaim()
                    next_claim = time.monotonic() + self._claim_every_s
                if time.monotonic() >= next_prune:
                    await self.stream.prune_consumers(idle_ms=PRUNE_IDLE_MS)
                    next_prune = time.monotonic() + 600
                deliveries = await self.stream.read(self.consumer, count=self.options.batch_size,
                                                    block_ms=self.options.block_ms)
                if deliveries:
                    await self.handle(deliveries)
                failures = 0
            except StoreUnavailable as exc:
                failures += 1
                self.runtime.metrics.store_errors.labels(exc.backend).inc()
                delay = min(10.0, 0.2 * 2 ** min(failures, 6))
                logger.warning("worker %s: %s; retrying in %.1f s", self.consumer, exc, delay)
                await wait_or_stop(stop, delay)
        with contextlib.suppress(StoreUnavailable):
            await self.stream.forget_consumer(self.consumer)

    async def reclaim(self) -> int:
        """Take over jobs of idle consumers; dead-letter those delivered too often."""
        taken = await self.stream.reclaim(self.consumer, min_idle_ms=self.options.claim_idle_ms,
                                          count=self.options.batch_size)
        if taken.vanished:
            self.metrics.jobs_vanished.labels(STREAM).inc(len(taken.vanished))
            logger.error("%d pending jobs were trimmed from the stream before being finished "
                         "(stream bound too small for the backlog): %s", len(taken.vanished),
                         ", ".join(taken.vanished[:10]))
        if not taken.deliveries:
            return 0
        self.metrics.jobs_reclaimed.labels(STREAM).inc(len(taken.deliveries))
        live = []
        for delivery in taken.deliveries:
            error = taken.errors.get(delivery.entry_id)
            transient = error is not None and error.startswith(TRANSIENT_PREFIX)
            if delivery.deliveries > self.options.max_deliveries and not transient:
                await self._dead_letter(delivery, error or (
                    f"not acknowledged after {delivery.deliveries - 1} deliveries "
                    "(its workers died or hung while holding it)"))
            else:
                live.append(delivery)
        logger.info("worker %s took over %d jobs from idle consumers", self.consumer,
                    len(taken.deliveries))
        if live:
            await self.handle(live)
        return len(taken.deliveries)

    async def handle(self, deliveries: list[Delivery]) -> None:
        """Explain a batch: skip existing traces, group by model version, store, acknowledge."""
        jobs: dict[str, _Job] = {}
        for delivery in deliveries:
            try:
                job = ExplainJob.from_fields(delivery.fields)
            except JobMalformed as exc:
                await self._dead_letter(delivery, describe(exc))
                continue
            kept = jobs.get(job.request_id)
            if kept is None:
                jobs[job.request_id] = _Job(delivery, job)
                continue
            # The same request twice in one batch: one explanation serves both.
            kept.extra.append(delivery.entry_id)
            if job.reexplain and not kept.job.reexplain:
                kept.job = replace(kept.job, reexplain=True)
        todo = await self._skip_explained(list(jobs.values()))
        groups = await self._prepare(todo)
        for members in groups.values():
            await self._explain_group(members)

    async def _skip_explained(self, jobs: list[_Job]) -> list[_Job]:
        checked = [job for job in jobs if not job.job.reexplain]
        traces = await asyncio.gather(*(self.runtime.traces.get_trace(job.job.request_id)
                                        for job in checked))
        done = {job.job.request_id for job, trace in zip(checked, traces, strict=True)
                if trace is not None}
        skipped = [job for job in jobs if job.job.request_id in done]
        if skipped:
            await self.stream.ack([i for job in skipped for i in (job.delivery.entry_id,
                                                                   *job.extra)])
            self.metrics.jobs.labels("skipped").inc(len(skipped))
            for job in skipped:
                with log_context(request_id=job.job.request_id):
                    logger.info("trace exists, job acknowledged without work",
                                extra={"consumer": self.consumer, "event": "job_skipped"})
        return [job for job in jobs if job.job.request_id not in done]

    async def _prepare(self, jobs: list[_Job]) -> dict[tuple[str, str], list[_Job]]:
        records = await asyncio.gather(*(self.runtime.records.get_record(job.job.request_id)
                                         for job in jobs))
        groups: defaultdict[tuple[str, str], list[_Job]] = defaultdict(list)
        for job, record in zip(jobs, records, strict=True):
            if record is None:
                await self._dead_letter(job.delivery, "the logged record is gone (past "
                                        "retention, or never stored)", job.extra)
                continue
            try:
                envelope = await replay_envelope(self.runtime, record)
            except StoreUnavailable:
                raise
            except Exception as exc:  # noqa: BLE001 - worker loop: one job must not stop the rest
                await self._dead_letter(job.delivery, describe(exc), job.extra)
                continue
            asked = job.job.counterfactuals
            job.model, job.version = record.model, record.version
            job.request = TraceRequest(
                envelope, job.job.reason, job.job.policy, job.job.received_ms,
                counterfactuals=CounterfactualAsk(asked) if asked > 0 else None,
                incidents=job.job.incidents)
            groups[(record.model, record.version)].append(job)
        return groups

    async def _explain_group(self, members: list[_Job]) -> None:
        # The logged record names the version that made the decision.
        model, version = members[0].model, members[0].version
        try:
            ready = await self.runtime.loader.get(model, version)
            await explain_and_store(
                self.runtime, [(ready, job.request) for job in members if job.request],
                strict=True)
        except StoreUnavailable as exc:
            for job in members:
                await self.stream.record_error(job.delivery.entry_id, describe(exc),
                                               transient=True)
            raise
        except Exception as exc:  # noqa: BLE001 - worker loop: isolate the poison job
            if len(members) > 1:
                for job in members:
                    await self._explain_group([job])
                return
            await self._fail(members[0], exc)
            return
        await self.stream.ack([i for job in members for i in (job.delivery.entry_id,
                                                               *job.extra)])
        self.metrics.jobs.labels("explained").inc(len(members))
        for job in members:
            traceparent = job.request.envelope.context.get("traceparent") if job.request else None
            with log_context(request_id=job.job.request_id,
                             traceparent=traceparent if isinstance(traceparent, str) else None):
                logger.info("trace stored", extra={
                    "consumer": self.consumer, "event": "trace_stored", "model": model,
                    "version": version, "deliveries": job.delivery.deliveries})

    async def _fail(self, job: _Job, exc: BaseException) -> None:
        error = describe(exc)
        if job.delivery.deliveries >= self.options.max_deliveries:
            await self._dead_letter(job.delivery, error, job.extra)
            return
        await self.stream.record_error(job.delivery.entry_id, error, transient=False)
        self.metrics.jobs.labels("retried").inc()
        with log_context(request_id=job.job.request_id):
            logger.warning("job failed (delivery %d of %d), retried after %d ms: %s",
                           job.delivery.deliveries, self.options.max_deliveries,
                           self.options.claim_idle_ms, error)

    async def _dead_letter(self, delivery: Delivery, error: str,
                           extra: list[str] | None = None) -> None:
        await self.stream.dead_letter(delivery, error=error, consumer=self.consumer)
        if extra:
            await self.stream.ack(extra)
        self.metrics.jobs.labels("dead_lettered").inc()
        with log_context(request_id=delivery.fields.get("request_id")):
            logger.error("job %s dead-lettered after %d deliveries: %s", delivery.entry_id,
                         delivery.deliveries, error, extra={"event": "job_dead_lettered"})
