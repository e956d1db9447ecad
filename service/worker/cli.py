"""`whylens worker` and `whylens dead-letters`: the command line of the job stream."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import orjson

from service.settings import Settings


def add_worker_parsers(commands: Any) -> None:
    """Add the `worker` and `dead-letters` subcommands."""
    worker = commands.add_parser(
        "worker", help="explain queued jobs and write the archive (settings from WHYLENS_*)")
    worker.add_argument("--consumer", help="consumer name (default: host-pid-random)")
    worker.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics here")
    worker.add_argument("--metrics-host", default="127.0.0.1")
    worker.add_argument("--no-explain", action="store_true", help="only archive")
    worker.add_argument("--no-archive", action="store_true", help="only explain")
    dead = commands.add_parser("dead-letters", help="list (or requeue) dead-lettered jobs")
    dead.add_argument("--limit", type=int, default=100)
    dead.add_argument("--requeue", action="store_true",
                      help="put the listed jobs back on the stream")


def run_worker_command(args: argparse.Namespace, settings: Settings) -> int:
    """Run the worker until SIGTERM."""
    from service.worker.process import WorkerRequest, run_worker

    request = WorkerRequest(consumer=args.consumer, metrics_port=args.metrics_port,
                            metrics_host=args.metrics_host, explain=not args.no_explain,
                            archive=not args.no_archive)
    return asyncio.run(run_worker(settings, request))


def run_dead_letters(args: argparse.Namespace, settings: Settings) -> int:
    """Print dead-lettered jobs as JSON lines; with --requeue, put them back."""
    return asyncio.run(_dead_letters(settings, limit=args.limit, requeue=args.requeue))


async def _dead_letters(settings: Settings, *, limit: int, requeue: bool) -> int:
    from service.errors import StartupRefused
    from service.scale_out import EXPLAIN_STREAM, WORKER_GROUP, queue_redis_url
    from storage.queue.stream import RedisStream, StreamKeys
    from storage.redis_client import open_redis_client

    url = queue_redis_url(settings)
    if url is None:
        raise StartupRefused("no job stream: set WHYLENS_TRACES=redis://... or "
                             "WHYLENS_QUEUE__REDIS_URL")
    client = open_redis_client(url)
    try:
        queue = settings.queue
        stream = RedisStream(client, StreamKeys.named(settings.redis_key_prefix, EXPLAIN_STREAM),
                             group=WORKER_GROUP, max_length=queue.max_length,
                             dead_max_length=queue.dead_letter_max_length)
        dead = await stream.dead_letters(limit)
        for entry in dead:
            print(orjson.dumps({"id": entry.entry_id, **entry.fields}).decode())
        if requeue:
            moved = await stream.requeue_dead([entry.entry_id for entry in dead])
            print(f"requeued {moved} jobs")
    finally:
        await client.aclose()
    return 0
