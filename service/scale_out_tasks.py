"""Background tasks of the scale-out parts: spool replay, stream gauges, archive feed retry."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from service.errors import ServiceError
from service.runtime import Runtime
from service.spool_replay import replay_spool
from service.task_control import stop_tasks
from storage.errors import StorageError, StoreUnavailable

logger = logging.getLogger(__name__)


async def refresh_stream_gauges(runtime: Runtime, *, explain_stream: bool) -> None:
    """Read the streams' length, lag and pending into the gauges (and the backlog)."""
    scale_out = runtime.scale_out
    if scale_out is None:
        return
    if explain_stream and scale_out.jobs is not None:
        stats = await scale_out.jobs.stats()
        scale_out.metrics.observe_stream("explain", stats)
        scale_out.backlog = stats.backlog
    if scale_out.archive_feed is not None:
        scale_out.metrics.observe_stream("archive", await scale_out.archive_feed.stats())
    if scale_out.feed is not None:
        scale_out.metrics.archive_unsent.set(await scale_out.feed.flush_unsent())


async def _every(interval_s: float, step: Callable[[], Awaitable[object]], what: str,
                 runtime: Runtime) -> None:
    while True:
        try:
            await step()
        except StoreUnavailable as exc:
            runtime.metrics.store_errors.labels(exc.backend).inc()
            logger.debug("%s: %s", what, exc)
        except (StorageError, ServiceError):
            logger.exception("%s failed", what)
        await asyncio.sleep(interval_s)


@contextlib.asynccontextmanager
async def scale_out_tasks(runtime: Runtime, *, explain_stream: bool) -> AsyncIterator[None]:
    """Run the background tasks for the duration of the block, then stop them (the parts
    close with the runtime: `service.app.close_runtime`).

    `explain_stream`: export the job stream's gauges (queue-mode replicas and workers).
    """
    scale_out = runtime.scale_out
    if scale_out is None:
        yield
        return
    settings = runtime.settings
    tasks = []
    if scale_out.spool is not None:
        tasks.append(asyncio.create_task(_every(
            settings.spool.replay_interval_s, lambda: replay_spool(runtime), "spool replay",
            runtime), name="whylens-spool-replay"))
    watch_jobs = explain_stream and scale_out.jobs is not None
    if watch_jobs or scale_out.archive_feed is not None:
        tasks.append(asyncio.create_task(_every(
            settings.queue.stats_interval_s,
            lambda: refresh_stream_gauges(runtime, explain_stream=watch_jobs),
            "reading stream statistics", runtime), name="whylens-stream-gauges"))
    try:
        yield
    finally:
        await stop_tasks(tasks)
        if scale_out.feed is not None and scale_out.feed.unsent:
            with contextlib.suppress(StoreUnavailable):
                await scale_out.feed.flush_unsent()

