"""Seams between the service and its stores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from storage.records import StoredRecord, StoredTrace, TracePage, TraceQuery


class ArtifactStore(Protocol):
    """Object storage for model versions: keys are '/'-separated paths under a root."""

    uri: str

    async def read(self, key: str) -> bytes:
        """Return the object's bytes; raise `ArtifactNotFound` when absent."""
        ...

    async def write(self, key: str, data: bytes) -> None:
        """Write the object atomically (readers see the old or the new bytes, never a mix)."""
        ...

    async def list(self, prefix: str) -> list[str]:
        """Return every key under `prefix`, sorted."""
        ...

    async def exists(self, key: str) -> bool:
        """Tell whether the object exists."""
        ...


class TraceStore(Protocol):
    """Masked traces keyed by the caller's request ID, searchable newest first."""

    backend: str

    async def put_traces(self, traces: Sequence[StoredTrace]) -> None:
        """Insert or replace traces (a re-explanation replaces the earlier trace)."""
        ...

    async def get_trace(self, request_id: str) -> StoredTrace | None:
        """Return the trace, or None when unknown or expired."""
        ...

    async def search_traces(self, query: TraceQuery) -> TracePage:
        """Return matching traces newest first (event time, then request ID)."""
        ...

    async def ping(self) -> None:
        """Raise `StoreUnavailable` when the store cannot be reached."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class RecordLog(Protocol):
    """Compact prediction log with sealed (encrypted) raw inputs, idempotent by request ID."""

    async def add_records(self, records: Sequence[StoredRecord]) -> list[StoredRecord | None]:
        """Insert records whose request ID is new.

        Returns, per input record, None when it was inserted, or the record already stored
        under that request ID (the earlier decision stands; nothing is overwritten).
        """
        ...

    async def get_record(self, request_id: str) -> StoredRecord | None:
        """Return the logged record, or None when unknown or past retention."""
        ...


@runtime_checkable
class ExpiringStore(Protocol):
    """A store whose expired rows must be deleted by a periodic call (no native TTL)."""

    async def purge_expired(self) -> int:
        """Delete expired rows; return how many."""
        ...
