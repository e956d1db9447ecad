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
    ttl_s: int | None = None
    """Retention of the log entry (None: the store's default); a write-time setting."""
    inputs_ttl_s: int | None = None
    """Retention of `sealed_inputs`, at most `ttl_s` (None: as long as the log entry)."""

    @property
    def deferred(self) -> bool:
        """The policy chose it but the explanation budget deferred it (a backfill candidate)."""
        return not self.sampled and self.reason is not None

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
    ttl_s: int | None = None
    """Retention of the trace (None: the store's default); a write-time setting."""

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


@dataclass(frozen=True, slots=True)
class SealedInput:
    """The sealed raw inputs of one logged record, as `scan_sealed_inputs` returns them."""

    request_id: str
    model: str
    sealed: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class SealedPage:
    """One page of a sealed-input scan and the cursor to resume from (None at the end)."""

    items: list[SealedInput] = field(default_factory=list)
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class SealedUpdate:
    """Replace `old` by `new` (compare-and-set: skipped when the stored bytes differ)."""

    request_id: str
    model: str
    old: bytes = field(repr=False)
    new: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class RecordQuery:
    """One model's logged records by event time, newest first (inclusive since, exclusive
    until); `deferred_only` keeps records the budget deferred. `cursor` as in TraceQuery."""

    model: str
    since_ms: int | None = None
    until_ms: int | None = None
    deferred_only: bool = False
    limit: int = 50
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class RecordPage:
    """One page of logged records and the cursor of the next one (None at the end)."""

    items: list[StoredRecord] = field(default_factory=list)
    next_cursor: str | None = None
