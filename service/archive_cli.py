"""`whylens archive purge [--dry-run]`: delete archive partitions past their retention now.

Same rules as the workers' periodic purge (service/archive_purge.py), under the same
Redis lease, so an operator's run never overlaps a worker's. Prints one line per due
partition: deleted (or, dry, would delete), or held by an incident.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from service.settings import Settings


def add_archive_parser(commands: Any) -> None:
    """Add `archive purge`."""
    archive = commands.add_parser("archive", help="the trace archive (settings from WHYLENS_*)")
    actions = archive.add_subparsers(dest="archive_command", required=True)
    purge = actions.add_parser("purge", help="delete dt= partitions past their model's "
                                             "retention (incident holds are kept)")
    purge.add_argument("--dry-run", action="store_true",
                       help="print what would be deleted; delete nothing")


def run_archive(args: argparse.Namespace, settings: Settings) -> int:
    """Run `whylens archive purge`."""
    return asyncio.run(_purge(settings, dry_run=args.dry_run))


async def _purge(settings: Settings, *, dry_run: bool) -> int:
    from service.app import build_runtime, close_runtime
    from service.archive_purge import PartitionVerdict, purge_archive
    from service.scale_out import open_archive_store
    from service.worker.archive_purge_loop import LEASE_NAME
    from service.worker.process import worker_settings
    from storage.archive.lease import RedisLease

    runtime = await build_runtime(worker_settings(settings), serving=False)
    try:
        scale_out = runtime.scale_out
        store = (scale_out.archive_store if scale_out is not None
                 and scale_out.archive_store is not None else open_archive_store(settings))
        lease = None
        if not dry_run and scale_out is not None and scale_out.redis is not None:
            lease = RedisLease(scale_out.redis, key_prefix=settings.redis_key_prefix,
                               name=LEASE_NAME, ttl_ms=int(settings.archive.purge_lease_s * 1000))
            if not await lease.acquire():
                print(f"another purge holds the lease {lease.key}; try again later")
                return 1
        verb = "would delete" if dry_run else "deleted"

        def show(verdict: PartitionVerdict) -> None:
            action = "held (incident)" if verdict.held else verb
            print(f"{action} {store.uri.rstrip('/')}/{verdict.partition.prefix} "
                  f"({len(verdict.keys)} objects)")

        try:
            report = await purge_archive(runtime, store, dry_run=dry_run, on_verdict=show,
                                         still_ours=None if lease is None else lease.renew)
        finally:
            if lease is not None:
                await lease.release()
        print(f"{verb} {report.objects} objects in {len(report.deleted)} partitions; "
              f"{len(report.held)} partitions held by incidents"
              + ("; stopped early (lease lost)" if report.interrupted else ""))
        return 1 if report.interrupted else 0
    finally:
        await close_runtime(runtime)
