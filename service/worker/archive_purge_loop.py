"""The archive purge in `whylens worker`: every interval, whoever holds the lease purges.

Every worker with the archive enabled runs this loop; the Redis lease
`{p}:lease:archive-purge` makes one of them at a time the owner of a run. The lease is
renewed before each partition, so a run slower than the lease stops instead of racing
the next owner.
"""

from __future__ import annotations

import asyncio
import logging

from service.archive_purge import PartitionVerdict, PurgeReport, purge_archive
from service.runtime import Runtime
from service.scale_out_metrics import ScaleOutMetrics
from service.worker.explain_loop import wait_or_stop
from storage.archive.lease import RedisLease
from storage.errors import StoreUnavailable
from storage.protocols import ArtifactStore

logger = logging.getLogger(__name__)

LEASE_NAME = "archive-purge"


class ArchivePurger:
    """Runs `purge_archive` every `interval_s` while this worker holds the lease."""

    def __init__(self, runtime: Runtime, store: ArtifactStore, lease: RedisLease,
                 metrics: ScaleOutMetrics, *, interval_s: float) -> None:
        self.runtime = runtime
        self.store = store
        self.lease = lease
        self.metrics = metrics
        self.interval_s = interval_s

    async def run(self, stop: asyncio.Event) -> None:
        """Purge now and then every interval, until `stop`."""
        while not stop.is_set():
            try:
                await self.run_once()
            except StoreUnavailable as exc:
                self.runtime.metrics.store_errors.labels(exc.backend).inc()
                logger.warning("archive purge failed, retried next interval: %s", exc)
            await wait_or_stop(stop, self.interval_s)

    async def run_once(self) -> PurgeReport | None:
        """One run if the lease is free; None when another worker holds it."""
        if not await self.lease.acquire():
            return None
        try:
            report = await purge_archive(self.runtime, self.store, still_ours=self.lease.renew,
                                         on_verdict=self._count)
        finally:
            await self.lease.release()
        self.metrics.archive_held.set(len(report.held))
        logger.info("archive purge deleted %d objects in %d partitions; %d partitions held "
                    "by incidents", report.objects, len(report.deleted), len(report.held),
                    extra={"event": "archive_purge",
                           "deleted": [v.partition.prefix for v in report.deleted],
                           "held": [v.partition.prefix for v in report.held]})
        return report

    def _count(self, verdict: PartitionVerdict) -> None:
        if not verdict.held:
            self.metrics.archive_purged.labels(verdict.partition.kind).inc(len(verdict.keys))
