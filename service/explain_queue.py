"""Queue mode: sampled records become explanation jobs on the Redis Stream."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from service.model_loader import ReadyModel
from service.runtime import Runtime
from service.trace_builder import TraceRequest
from storage.errors import StoreUnavailable
from storage.queue.jobs import ExplainJob
from storage.queue.stream import BACKEND as QUEUE_BACKEND

logger = logging.getLogger(__name__)


async def enqueue_explanations(runtime: Runtime,
                               requests: Sequence[tuple[ReadyModel, TraceRequest]]) -> bool:
    """Enqueue one job per record in queue mode; False when the caller must explain inline.

    Inline it is in the embedded mode (`WHYLENS_EXPLAIN_MODE=inline`) and, as
    backpressure, while the job backlog is above `queue.high_water` of the stream bound:
    slower ingest rather than jobs trimmed from the stream.

    Raises:
        StoreUnavailable: the stream's Redis did not take the jobs.
    """
    scale_out = runtime.scale_out
    if scale_out is None or not scale_out.queue_mode or scale_out.jobs is None:
        return False
    if scale_out.backlog >= scale_out.max_backlog:
        scale_out.metrics.queue_overflow.inc(len(requests))
        logger.warning("job backlog %d is above %d: explaining %d records inline",
                       scale_out.backlog, scale_out.max_backlog, len(requests))
        return False
    jobs = [ExplainJob(request.envelope.request_id, ready.manifest.name, ready.manifest.version,
                       request.reason, request.policy, request.received_ms,
                       counterfactuals=request.counterfactuals.count
                       if request.counterfactuals is not None else 0,
                       incidents=request.incidents)
            for ready, request in requests]
    await enqueue_jobs(runtime, jobs)
    return True


async def enqueue_jobs(runtime: Runtime, jobs: Sequence[ExplainJob]) -> None:
    """Put jobs on the stream (incident backfills use this with `reexplain`).

    Raises:
        StoreUnavailable: no job stream is configured, or its Redis did not answer.
    """
    scale_out = runtime.scale_out
    if scale_out is None or scale_out.jobs is None:
        raise StoreUnavailable(QUEUE_BACKEND, "no job stream configured (needs Redis)")
    try:
        await scale_out.jobs.add([job.to_fields() for job in jobs])
    except StoreUnavailable:
        runtime.metrics.store_errors.labels(QUEUE_BACKEND).inc()
        raise
    scale_out.metrics.jobs_enqueued.inc(len(jobs))
