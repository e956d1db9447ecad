"""What the audit log keeps: who did what, when, to which request, and how it ended."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audited action. Never holds a raw masked value, only names and identifiers."""

    at_ms: int
    actor: str
    """Name of the API key (`auth-off` when authentication is disabled)."""
    action: str
    """`trace.unmask`, or `admin` for an admin endpoint."""
    target: str
    """What was acted on: the HTTP method and path of the call."""
    request_id: str | None
    """The trace's request ID for an unmask; the caller's X-Request-ID for admin calls."""
    status: int
    """HTTP status of the answer (403: the caller was refused)."""
    detail: dict[str, str] = field(default_factory=dict)
    """Small extra facts, e.g. which features were unmasked (names only)."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """A stored event with the id the log gave it (increasing in append order)."""

    entry_id: str
    event: AuditEvent


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Newest-first page of the log; `since_ms` inclusive, `until_ms` exclusive."""

    limit: int = 50
    cursor: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None


@dataclass(frozen=True, slots=True)
class AuditPage:
    """Entries newest first and the cursor of the next page (None at the end)."""

    items: list[AuditEntry] = field(default_factory=list)
    next_cursor: str | None = None
