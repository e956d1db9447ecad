"""Ingest's side of the outage spool: keep accepted records on disk while the store is down."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from service.runtime import Runtime
from storage.errors import SpoolFull, SpoolLocked, StorageError
from storage.records import StoredRecord

logger = logging.getLogger(__name__)

# One warning per interval while spooling, not one per request.
_WARN_EVERY_S = 10.0


@dataclass(frozen=True, slots=True)
class SpoolCheck:
    """The spool's part of /readyz."""

    records: int
    bytes: int
    max_bytes: int
    full: bool = False
    error: str | None = None

    @property
    def has_room(self) -> bool:
        """Whether the spool can still take records (the replica stays in rotation)."""
        return self.error is None and not self.full and self.bytes < self.max_bytes

    def as_json(self) -> dict[str, object]:
        """Render for the readiness answer."""
        body: dict[str, object] = {"records": self.records, "bytes": self.bytes,
                                   "max_bytes": self.max_bytes, "full": not self.has_room}
        if self.error is not None:
            body["error"] = self.error
        return body


async def spool_records(runtime: Runtime, records: Sequence[StoredRecord]) -> bool:
    """Append records the store refused; False when this process has no spool.

    Raises:
        SpoolFull: the records do not fit (the caller answers 503; nothing was written).
        SpoolLocked: another process owns the spool folder.
    """
    scale_out = runtime.scale_out
    if scale_out is None or scale_out.spool is None:
        return False
    metrics = scale_out.metrics
    try:
        await scale_out.spool.append(records)
    except (SpoolFull, SpoolLocked):
        metrics.spool_refused.inc(len(records))
        raise
    metrics.spool_appended.inc(len(records))
    depth = await scale_out.spool.depth()
    metrics.spool_records.set(depth.records)
    metrics.spool_bytes.set(depth.bytes)
    now = time.monotonic()
    if now - scale_out.last_spool_warning >= _WARN_EVERY_S:
        scale_out.last_spool_warning = now
        logger.warning("trace store unavailable: %d records (%d bytes) in the outage spool %s",
                       depth.records, depth.bytes, scale_out.spool.directory)
    return True


async def check_spool(runtime: Runtime) -> SpoolCheck | None:
    """Return the spool's depth and room, or None when this process has no spool."""
    scale_out = runtime.scale_out
    if scale_out is None or scale_out.spool is None:
        return None
    spool = scale_out.spool
    try:
        depth = await spool.depth()
    except (StorageError, OSError) as exc:
        return SpoolCheck(0, 0, spool.max_bytes, error=str(exc))
    scale_out.metrics.spool_records.set(depth.records)
    scale_out.metrics.spool_bytes.set(depth.bytes)
    return SpoolCheck(depth.records, depth.bytes, spool.max_bytes, full=depth.full)
