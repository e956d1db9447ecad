"""One `whylens worker` process: its own runtime, signal handling, loops and /metrics."""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import secrets
import signal
import socket
import sys
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from prometheus_client import start_http_server

from service.app import build_runtime, close_runtime, preload
from service.errors import StartupRefused
from service.runtime import Runtime
from service.scale_out_tasks import scale_out_tasks
from service.settings import Settings
from service.worker.archive_loop import Archiver, ArchiverOptions
from service.worker.archive_purge_loop import LEASE_NAME, ArchivePurger
from service.worker.explain_loop import ExplainWorker, WorkerOptions
from storage.archive.lease import RedisLease
from storage.archive.writer import ArchiveWriter, Backoff

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WorkerRequest:
    """What the command line asked of this worker."""

    consumer: str | None = None
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    explain: bool = True
    archive: bool = True


def consumer_name() -> str:
    """A consumer name unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


def worker_settings(settings: Settings) -> Settings:
    """The worker's settings: no spool (only API replicas spool; a worker retries)."""
    return settings.model_copy(update={"spool": settings.spool.model_copy(
        update={"enabled": False})})


async def run_worker(settings: Settings, request: WorkerRequest) -> int:
    """Run until SIGTERM or SIGINT; the batch in hand is finished (or left for reclaim)."""
    runtime = await build_runtime(worker_settings(settings), serving=False)
    try:
        loops = _loops(runtime, request, stop := asyncio.Event())
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        # `kill -USR1` prints every thread's stack (faulthandler, works even when the loop
        # is blocked) and then every asyncio task's: how a worker that does not stop is
        # diagnosed without killing it.
        loop.add_signal_handler(signal.SIGUSR1, _print_tasks)
        faulthandler.register(signal.SIGUSR1, all_threads=True, chain=True)
        await preload(runtime)
        server = None
        if request.metrics_port is not None:
            # Started after preload: /metrics answering means the worker is ready.
            server, _thread = start_http_server(request.metrics_port, request.metrics_host,
                                                registry=runtime.metrics.registry)
        logger.info("worker started: %d loops", len(loops), extra={"event": "worker_started"})
        try:
            async with scale_out_tasks(runtime, explain_stream=True):
                await asyncio.gather(*loops)
        finally:
            if server is not None:
                server.shutdown()
        logger.info("worker stopped", extra={"event": "worker_stopped"})
    finally:
        await close_runtime(runtime)
    return 0


def _print_tasks() -> None:
    for task in asyncio.all_tasks():
        print(f"--- asyncio task {task.get_name()}: {task.get_coro()!r}", file=sys.stderr)
        task.print_stack(file=sys.stderr)
    sys.stderr.flush()


def _loops(runtime: Runtime, request: WorkerRequest,
           stop: asyncio.Event) -> list[Coroutine[Any, Any, None]]:
    scale_out = runtime.scale_out
    if scale_out is None or scale_out.jobs is None:
        raise StartupRefused("whylens worker needs Redis: set WHYLENS_TRACES=redis://... or "
                             "WHYLENS_QUEUE__REDIS_URL")
    settings = runtime.settings
    name = request.consumer or consumer_name()
    loops: list[Coroutine[Any, Any, None]] = []
    if request.explain:
        worker = ExplainWorker(runtime, scale_out.jobs, scale_out.metrics, consumer=name,
                               options=WorkerOptions.from_settings(settings.queue))
        loops.append(worker.run(stop))
    if request.archive and scale_out.archive_feed is not None:
        assert scale_out.archive_store is not None and scale_out.archive_index is not None
        metrics = scale_out.metrics
        archive = settings.archive
        writer = ArchiveWriter(scale_out.archive_store, scale_out.archive_index,
                               backoff=Backoff(archive.retry_base_s, archive.retry_cap_s),
                               on_retry=lambda _what, _exc: metrics.archive_retries.inc())
        options = ArchiverOptions(archive.batch_records, archive.flush_interval_s,
                                  settings.queue.block_ms, settings.queue.claim_idle_ms)
        loops.append(Archiver(runtime, scale_out.archive_feed, writer, metrics, consumer=name,
                              options=options).run(stop))
        if archive.purge and scale_out.redis is not None:
            lease = RedisLease(scale_out.redis, key_prefix=settings.redis_key_prefix,
                               name=LEASE_NAME, ttl_ms=int(archive.purge_lease_s * 1000))
            loops.append(ArchivePurger(runtime, scale_out.archive_store, lease, metrics,
                                       interval_s=archive.purge_interval_s).run(stop))
    if not loops:
        raise StartupRefused("nothing to do: explaining is off (--no-explain) and the archive "
                             "is not enabled or --no-archive was given")
    return loops
