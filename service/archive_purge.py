"""Delete archive partitions past their model's retention, sparing those an incident holds.

The unit of deletion is a whole `<kind>/dt=<day>/model=<name>/` partition: it is due once
the end of its UTC day plus the model's `archive_traces_s` / `archive_records_s` has
passed (the instant its index entries expire too).

Hold rule (docs/security.md, Retention): a due *traces* partition of model M and day D is
kept while some incident is held (open, or closed less than its incident retention ago)
and either has a linked trace of M whose event time falls on D, or is an incident of M
that was open on D (incident mode explains that model's decisions at 100 %). Linked
traces are found through the trace store, which keeps them for the whole hold.
Prediction-log partitions are never held, as in the store.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from service.incidents.holds import HoldResolver
from service.model_retention import RetentionLookup
from service.runtime import Runtime
from storage.archive.layout import Partition, partition_date, partition_expiry_ms, partition_of
from storage.incidents.records import StoredIncident
from storage.protocols import ArtifactStore
from storage.records import TraceQuery

logger = logging.getLogger(__name__)

# Incidents read to find holds; beyond this the purge holds every traces partition
# rather than guess (an operator with that many incidents should look at why).
MAX_INCIDENTS = 100_000
TRACE_PAGE = 500
KINDS = ("traces", "records")


@dataclass(frozen=True, slots=True)
class PartitionVerdict:
    """A due partition, its objects, and whether a hold keeps it."""

    partition: Partition
    keys: tuple[str, ...]
    held: bool


@dataclass(slots=True)
class PurgeReport:
    """What one purge run deleted (or, dry, would delete) and kept for holds."""

    deleted: list[PartitionVerdict] = field(default_factory=list)
    held: list[PartitionVerdict] = field(default_factory=list)
    interrupted: bool = False
    """True when the run stopped early (its lease was lost); the rest waits for the next."""

    @property
    def objects(self) -> int:
        """Objects deleted (or that would be)."""
        return sum(len(v.keys) for v in self.deleted)


async def held_days(runtime: Runtime, *, now_ms: int) -> set[tuple[str, str]] | None:
    """(model, day) pairs whose traces partitions a held incident keeps; None: hold all."""
    store = runtime.incidents.store
    listed = await store.list_incidents(limit=MAX_INCIDENTS)
    if len(listed) >= MAX_INCIDENTS:
        logger.error("more than %d incidents: every traces partition is held this run",
                     MAX_INCIDENTS)
        return None
    # fewer than the limit: `listed` is every incident, the open ones included
    resolver = HoldResolver(runtime)
    held: set[tuple[str, str]] = set()
    for incident in listed:
        resolver.remember(incident)
        until = await resolver.until_ms([incident.incident_id])
        if until is not None and until <= now_ms:
            continue
        held.update((incident.model, day) for day in _open_days(incident, now_ms))
        cursor: str | None = None
        while True:
            page = await runtime.traces.search_traces(
                TraceQuery(incident=incident.incident_id, limit=TRACE_PAGE, cursor=cursor))
            held.update((t.model, partition_date(t.event_ms)) for t in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
    return held


def _open_days(incident: StoredIncident, now_ms: int) -> list[str]:
    first = datetime.fromtimestamp(incident.opened_ms / 1000, tz=UTC).date()
    end_ms = now_ms if incident.closed_ms is None else incident.closed_ms
    last = datetime.fromtimestamp(max(end_ms, incident.opened_ms) / 1000, tz=UTC).date()
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


async def due_partitions(runtime: Runtime, store: ArtifactStore, *,
                         now_ms: int) -> list[PartitionVerdict]:
    """Every partition past its retention, oldest day first, with its hold verdict."""
    retention = RetentionLookup(runtime)
    due: list[PartitionVerdict] = []
    for kind in KINDS:
        grouped: defaultdict[Partition, list[str]] = defaultdict(list)
        for key in await store.list(f"{kind}/dt="):
            partition = partition_of(key)
            if partition is not None:
                grouped[partition].append(key)
        for partition, keys in grouped.items():
            resolved = await retention.of(partition.model)
            keep_s = (resolved.archive_traces_s if kind == "traces"
                      else resolved.archive_records_s)
            if now_ms >= partition_expiry_ms(partition.day, keep_s):
                due.append(PartitionVerdict(partition, tuple(keys), held=False))
    if any(v.partition.kind == "traces" for v in due):
        held = await held_days(runtime, now_ms=now_ms)
        due = [PartitionVerdict(v.partition, v.keys, held=v.partition.kind == "traces" and (
                   held is None or (v.partition.model, v.partition.day) in held))
               for v in due]
    due.sort(key=lambda v: (v.partition.day, v.partition.kind, v.partition.model))
    return due


async def purge_archive(runtime: Runtime, store: ArtifactStore, *, now_ms: int | None = None,
                        dry_run: bool = False,
                        still_ours: Callable[[], Awaitable[bool]] | None = None,
                        on_verdict: Callable[[PartitionVerdict], None] | None = None,
                        ) -> PurgeReport:
    """Delete every due partition that no incident holds; report what was done.

    `still_ours` is asked before each partition (the purge lease is renewed there); when
    it answers False the run stops. `on_verdict` sees each partition as it is handled.

    Raises:
        StoreUnavailable: the object store, trace store or incident store failed; what
            was deleted stays deleted, the rest is retried by the next run.
    """
    now = int(time.time() * 1000) if now_ms is None else now_ms
    report = PurgeReport()
    for verdict in await due_partitions(runtime, store, now_ms=now):
        if verdict.held:
            report.held.append(verdict)
        else:
            if still_ours is not None and not await still_ours():
                logger.warning("archive purge lost its lease; the rest waits for the next run")
                report.interrupted = True
                break
            if not dry_run:
                await store.delete(verdict.keys)
            report.deleted.append(verdict)
        if on_verdict is not None:
            on_verdict(verdict)
    return report
