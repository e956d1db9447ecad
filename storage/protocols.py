"""Seams between the service and its stores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from storage.audit.records import AuditEvent, AuditPage, AuditQuery
from storage.drift.records import BucketRef, WindowIncrement, WindowKey
from storage.incidents.records import AttachedPage, StoredIncident, StoredJob
from storage.records import (
    RecordPage,
    RecordQuery,
    SealedPage,
    SealedUpdate,
    StoredRecord,
    StoredTrace,
    TracePage,
    TraceQuery,
)


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

    async def delete(self, keys: Sequence[str]) -> int:
        """Delete the objects (absent ones are no error); return how many were asked."""
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


class DriftWindowStore(Protocol):
    """Live drift windows: additive counters per model version, segment and time bucket.

    Counters are summed across writers (replicas), except maxima (`is_maximum`), which
    keep the largest value. Buckets expire at their end plus the store's retention.
    """

    backend: str

    async def add_window_counts(self, increments: Sequence[WindowIncrement]) -> None:
        """Apply increments atomically per bucket (concurrent writers never lose counts)."""
        ...

    async def read_window_counts(self, key: WindowKey,
                                 buckets: Sequence[BucketRef]) -> dict[str, float]:
        """Return the buckets' counters merged; absent or expired buckets count as empty."""
        ...

    async def admit_segments(self, model: str, dimension: str, values: Sequence[str], *,
                             cap: int) -> frozenset[str]:
        """Return which values are tracked as segments: known ones, new ones up to `cap`."""
        ...

    async def claim_labels(self, model: str, request_ids: Sequence[str]) -> list[bool]:
        """Claim each request ID's label once; True where this call claimed it."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class SealedInputLog(Protocol):
    """Walks and rewrites sealed inputs in place (key rotation: `whylens keys reencrypt`)."""

    async def scan_sealed_inputs(self, cursor: str | None, *, limit: int) -> SealedPage:
        """Return about `limit` live sealed inputs and a cursor to resume from (None: done).

        A page may be empty while the cursor is not None; every item present for the
        whole scan is returned at least once.
        """
        ...

    async def replace_sealed_inputs(self, updates: Sequence[SealedUpdate]) -> int:
        """Replace each item whose stored bytes still equal `old`; return how many."""
        ...


class TraceHolds(Protocol):
    """Overrides a trace's retention (incident-linked traces outlive the default)."""

    async def retain_traces(self, request_ids: Sequence[str], *, until_ms: int | None) -> int:
        """Keep the traces until `until_ms` (None: until released); return how many exist."""
        ...


class ExplanationBudget(Protocol):
    """Token buckets of explanations per model, shared by every replica of a deployment."""

    backend: str

    async def take_tokens(self, model: str, count: int, *, rate: float,
                          capacity: float) -> int:
        """Refill the model's bucket (`rate` per second, at most `capacity`) and take up to
        `count` whole tokens atomically; return how many were granted."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class AuditLog(Protocol):
    """Append-only log of unmasked reads and admin actions."""

    backend: str

    async def append(self, event: AuditEvent) -> str:
        """Store the event and return its id (ids increase in append order)."""
        ...

    async def page(self, query: AuditQuery) -> AuditPage:
        """Return entries newest first, resuming strictly after `query.cursor`."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class RecordListing(Protocol):
    """Lists one model's logged records by event time (backfills, deferred records)."""

    async def list_records(self, query: RecordQuery) -> RecordPage:
        """Return live records of `query.model` newest first (event time, then request ID)."""
        ...


class IncidentLinks(Protocol):
    """Links existing traces to incidents (the trace store's side of an attachment)."""

    async def attach_incident(self, incident_id: str, request_ids: Sequence[str]) -> list[str]:
        """Add the incident to each existing trace (its `incidents` and the `?incident=`
        index) and hold the trace past retention; return the request IDs linked."""
        ...

    async def release_incident(self, incident_id: str, models: Sequence[str], *,
                               until_ms: int) -> None:
        """Let the incident's own search index (for traces of `models`) expire at `until_ms`;
        the traces' expiry is set through `TraceHolds.retain_traces`."""
        ...


class IncidentStore(Protocol):
    """Incidents and the request IDs attached to them."""

    backend: str

    async def create_incident(self, incident: StoredIncident) -> bool:
        """Insert the incident; False (and nothing written) when its ID is taken."""
        ...

    async def get_incident(self, incident_id: str) -> StoredIncident | None:
        """Return the incident, or None."""
        ...

    async def list_incidents(self, *, open_only: bool = False,
                             limit: int = 100) -> list[StoredIncident]:
        """Return incidents newest first (only open ones with `open_only`)."""
        ...

    async def save_incident(self, incident: StoredIncident) -> None:
        """Replace an existing incident (state, close time)."""
        ...

    async def attach_requests(self, incident_id: str, request_ids: Sequence[str], *,
                              attached_ms: int) -> int:
        """Attach request IDs (the first attachment time stands); return how many were new."""
        ...

    async def attached_requests(self, incident_id: str, *, limit: int,
                                cursor: str | None) -> AttachedPage:
        """Return a page of attached request IDs, newest attachment first, and the total."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class JobQueue(Protocol):
    """The durable outbox: jobs survive restarts and are claimed under a lease."""

    async def enqueue_job(self, job: StoredJob, payload: bytes | None) -> StoredJob:
        """Insert the job unless one with its ID exists; return the stored job either way."""
        ...

    async def claim_jobs(self, *, now_ms: int, lease_ms: int, limit: int) -> list[StoredJob]:
        """Return unfinished jobs due by `now_ms`; each is not due again before the lease ends."""
        ...

    async def save_job(self, job: StoredJob) -> None:
        """Replace the job (state, attempts, due time, detail); finished jobs drop the payload."""
        ...

    async def jobs_of(self, incident_id: str) -> list[StoredJob]:
        """Return the incident's jobs, oldest first."""
        ...

    async def job_payload(self, job_id: str) -> bytes | None:
        """Return the job's payload, None once finished or when it had none."""
        ...
