"""A trace store that also appends every new trace and record to the archive feed.

The feed is a Redis Stream (`RedisStream`, name `archive`) read by archivers, which write
batches to object storage and only then acknowledge. Entries name what to archive
(kind, request ID, model); the archiver reads the bodies from the store, so the feed
stays small. The feed is told after the store write succeeded: when only the feed append
fails, the entries wait in memory and `flush_unsent` retries them (the archivers'
backlog shows in `unsent`), instead of failing a write that already happened.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from storage.errors import StoreUnavailable
from storage.protocols import RecordLog, TraceStore
from storage.queue.stream import RedisStream
from storage.records import StoredRecord, StoredTrace, TracePage, TraceQuery

logger = logging.getLogger(__name__)

FEED_STREAM = "archive"
TRACE = "t"
RECORD = "r"
# Entries kept in memory while the feed is unreachable; beyond this the oldest are
# dropped with an error log and counted (the store still holds them until retention).
MAX_UNSENT = 100_000


class TraceAndRecordStore(TraceStore, RecordLog, Protocol):
    """A store that is both the trace store and the record log (both backends are)."""


class ArchiveFeedStore:
    """Delegates to the real store and feeds the archive with what was written.

    Traces changed in place by other store calls (an incident link) are not fed again;
    the archive keeps the trace as explained.
    """

    def __init__(self, inner: TraceAndRecordStore, feed: RedisStream) -> None:
        self.inner = inner
        self.feed = feed
        self.backend = inner.backend
        self._unsent: list[dict[str, str]] = []
        self.dropped = 0

    def __getattr__(self, name: str) -> Any:
        # Every other ability of the store (incident links, listings, purge, ...) is the
        # inner store's, unchanged: only writes of traces and records feed the archive.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def unsent(self) -> int:
        """Feed entries waiting in memory for the feed to come back."""
        return len(self._unsent)

    async def put_traces(self, traces: Sequence[StoredTrace]) -> None:
        """Write traces, then feed them to the archive."""
        await self.inner.put_traces(traces)
        await self._tell([{"k": TRACE, "id": t.request_id, "m": t.model} for t in traces])

    async def add_records(self, records: Sequence[StoredRecord]) -> list[StoredRecord | None]:
        """Insert new records, then feed the inserted ones (not duplicates) to the archive."""
        answers = await self.inner.add_records(records)
        await self._tell([{"k": RECORD, "id": r.request_id, "m": r.model}
                          for r, earlier in zip(records, answers, strict=True)
                          if earlier is None])
        return answers

    async def get_trace(self, request_id: str) -> StoredTrace | None:
        """Delegate."""
        return await self.inner.get_trace(request_id)

    async def search_traces(self, query: TraceQuery) -> TracePage:
        """Delegate."""
        return await self.inner.search_traces(query)

    async def get_record(self, request_id: str) -> StoredRecord | None:
        """Delegate."""
        return await self.inner.get_record(request_id)

    async def ping(self) -> None:
        """Delegate."""
        await self.inner.ping()

    async def flush_unsent(self) -> int:
        """Retry feed entries kept in memory; return how many are still waiting."""
        if self._unsent:
            await self._tell([])
        return len(self._unsent)

    async def close(self) -> None:
        """Try once more to feed what is waiting, then close the store."""
        if self._unsent:
            await self._tell([])
            if self._unsent:
                logger.error("closing with %d archive feed entries not sent: those traces "
                             "and records are in the store but will not be archived",
                             len(self._unsent))
        await self.inner.close()

    async def _tell(self, entries: list[dict[str, str]]) -> None:
        # Take the waiting entries before the await: a concurrent call neither resends
        # them nor loses its own when both fail.
        pending = self._unsent + entries
        self._unsent = []
        if not pending:
            return
        try:
            await self.feed.add(pending)
        except StoreUnavailable as exc:
            self._unsent = pending + self._unsent
            overflow = len(self._unsent) - MAX_UNSENT
            if overflow > 0:
                self.dropped += overflow
                del self._unsent[:overflow]
                logger.error("archive feed unreachable: dropped %d feed entries beyond %d "
                             "held in memory (%s)", overflow, MAX_UNSENT, exc)
            else:
                logger.warning("archive feed unreachable, %d entries held in memory: %s",
                               len(self._unsent), exc)
