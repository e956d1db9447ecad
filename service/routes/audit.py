"""GET /v1/audit: the audit log, newest first (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from service.deps import AdminCaller, RuntimeDep
from service.errors import FieldError, RecordInvalid
from service.trace_builder import iso_ms
from service.validation import parse_time
from storage.audit.records import AuditQuery

router = APIRouter(tags=["admin"])

MAX_PAGE = 500


class AuditEntryOut(BaseModel):
    """One audited action."""

    id: str
    at: str
    actor: str
    action: str
    target: str
    request_id: str | None
    status: int
    detail: dict[str, str]


class AuditPageOut(BaseModel):
    """A page of the audit log and the cursor of the next one."""

    entries: list[AuditEntryOut]
    next_cursor: str | None


def _moment(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    parsed = parse_time(value)
    if parsed is None:
        raise RecordInvalid([FieldError(name, "expected an ISO 8601 date-time")])
    return parsed


@router.get("/v1/audit")
async def get_audit(
    runtime: RuntimeDep, caller: AdminCaller,
    since: str | None = None, until: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> AuditPageOut:
    """Unmasked reads and admin actions, newest first; follow `next_cursor`."""
    page = await runtime.audit.page(AuditQuery(
        limit=limit, cursor=cursor, since_ms=_moment("since", since),
        until_ms=_moment("until", until)))
    return AuditPageOut(
        entries=[AuditEntryOut(id=e.entry_id, at=iso_ms(e.event.at_ms), actor=e.event.actor,
                               action=e.event.action, target=e.event.target,
                               request_id=e.event.request_id, status=e.event.status,
                               detail=e.event.detail) for e in page.items],
        next_cursor=page.next_cursor)
