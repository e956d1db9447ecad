"""What the incident stores keep: incidents, attached request IDs, and outbox jobs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

INCIDENT_OPEN = "open"
INCIDENT_CLOSED = "closed"

JOB_QUEUED = "queued"
JOB_RETRYING = "retrying"
JOB_RUNNING = "running"
JOB_DONE = "done"
JOB_FAILED = "failed"
TERMINAL_JOB_STATES = frozenset({JOB_DONE, JOB_FAILED})


@dataclass(frozen=True, slots=True)
class StoredIncident:
    """One incident; `state` is `open` or `closed`, times in epoch milliseconds."""

    incident_id: str
    model: str
    title: str
    severity: int
    state: str
    explain_all: bool
    opened_ms: int
    closed_ms: int | None = None
    opened_by: str | None = None
    closed_by: str | None = None

    @property
    def is_open(self) -> bool:
        """Tell whether the incident is still open."""
        return self.state == INCIDENT_OPEN

    def to_json(self) -> bytes:
        """Return the stored value."""
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes) -> StoredIncident:
        """Return the incident of a value made by `to_json`."""
        fields: dict[str, Any] = orjson.loads(data)
        return cls(**fields)


@dataclass(frozen=True, slots=True)
class AttachedRequest:
    """A request ID attached to an incident, and when."""

    request_id: str
    attached_ms: int


@dataclass(frozen=True, slots=True)
class AttachedPage:
    """One page of attached request IDs (newest attachment first), and the total."""

    items: list[AttachedRequest] = field(default_factory=list)
    next_cursor: str | None = None
    total: int = 0


@dataclass(frozen=True, slots=True)
class StoredJob:
    """One durable outbox job of an incident (an export or a backfill).

    `due_ms` is when the job may next be claimed; a claim pushes it to the end of the
    lease, so a worker that dies mid-job hands it on. `detail` is the service's JSON
    (target, digest, progress, last error); the store never reads it.
    """

    job_id: str
    incident_id: str
    kind: str
    state: str
    attempts: int
    due_ms: int
    created_ms: int
    updated_ms: int
    detail: bytes = b"{}"

    @property
    def terminal(self) -> bool:
        """Tell whether the job is finished (done or failed) and never claimed again."""
        return self.state in TERMINAL_JOB_STATES

    def to_json(self) -> bytes:
        """Return the stored value (detail embedded as text)."""
        fields = asdict(self)
        fields["detail"] = self.detail.decode("utf-8")
        return orjson.dumps(fields)

    @classmethod
    def from_json(cls, data: bytes) -> StoredJob:
        """Return the job of a value made by `to_json`."""
        fields: dict[str, Any] = orjson.loads(data)
        fields["detail"] = str(fields["detail"]).encode("utf-8")
        return cls(**fields)
