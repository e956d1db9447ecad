"""What the stores keep: opaque bodies plus the few fields they index."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One logged prediction.

    `body` is the compact log as JSON (logged prediction, context, action, times,
    sampling decision; never raw masked values). `sealed_inputs` is the AES-GCM
    envelope of the raw features, opaque to the store.
    """

    request_id: str
    model: str
    version: str
    event_ms: int
    received_ms: int
    sampled: bool
    reason: str | None
    body: bytes
    sealed_inputs: bytes

    def __repr__(self) -> str:
        return (
            f"StoredRecord(request_id={self.request_id!r}, model={self.model!r}, "
            f"version={self.version!r}, sampled={self.sampled}, reason={self.reason!r})"
        )


@dataclass(frozen=True, slots=True)
class StoredTrace:
    """One masked trace. `body` is the trace JSON exactly as served."""

    request_id: str
    model: str
    version: str
    reason: str | None
    event_ms: int
    body: bytes
    incidents: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return (
            f"StoredTrace(request_id={self.request_id!r}, model={self.model!r}, "
            f"version={self.version!r}, reason={self.reason!r})"
        )


@dataclass(frozen=True, slots=True)
class TraceQuery:
    """Filters for trace search; every given filter must match.

    `version` is only meaningful with `model`. `since_ms`/`until_ms` bound the event
    time (inclusive since, exclusive until). `cursor` is the opaque `next_cursor` of
    the previous page.
    """

    model: str | None = None
    version: str | None = None
    reason: str | None = None
    incident: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    limit: int = 50
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class TracePage:
    """One page of search results and the cursor of the next one (None at the end)."""

    items: list[StoredTrace] = field(default_factory=list)
    next_cursor: str | None = None
