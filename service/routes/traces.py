"""GET /v1/traces/{request_id} and trace search."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import orjson
from fastapi import APIRouter, Query
from starlette.responses import Response

from service.archive_reads import find_archived_trace
from service.audit import unmask_trace
from service.deps import AnyCaller, ReadCaller, RuntimeDep
from service.drift.trace_context import attach_drift
from service.errors import FieldError, RecordInvalid, TraceNotFound
from service.incidents.trace_view import trace_body
from service.validation import REQUEST_ID
from storage.records import TraceQuery

router = APIRouter(tags=["read"])

MAX_PAGE = 500


@router.get("/v1/traces/{request_id}")
async def get_trace(
    request_id: str, runtime: RuntimeDep, caller: AnyCaller, unmask: bool = False,
) -> Response:
    """Return one trace; 404 problem when unknown or past retention.

    `?unmask=true` needs the `audit` role: masked features get their raw values back
    from the sealed inputs (410 problem once those are past retention), and the read
    is written to the audit log first.
    """
    caller.require("audit" if unmask else "read")
    if not REQUEST_ID.match(request_id):
        raise RecordInvalid([FieldError("request_id", "1-128 characters of letters, digits "
                                                       "and ._:-")])
    stored = await runtime.traces.get_trace(request_id)
    if stored is None:
        stored = await find_archived_trace(runtime, request_id)
    if stored is None:
        raise TraceNotFound(request_id)
    body = await attach_drift(runtime, trace_body(stored))
    if unmask:
        body = await unmask_trace(runtime, caller, stored, body)
    return Response(body, media_type="application/json")


def _epoch_ms(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise RecordInvalid([FieldError(name, "expected an ISO 8601 date-time")]) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@router.get("/v1/traces")
async def search_traces(
    runtime: RuntimeDep, caller: ReadCaller,
    model: str | None = None, version: str | None = None, reason: str | None = None,
    incident: str | None = None, since: str | None = None, until: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50, cursor: str | None = None,
) -> Response:
    """Search traces newest first; follow `next_cursor` for the next page."""
    if version is not None and model is None:
        raise RecordInvalid([FieldError("version", "filtering by version needs model")])
    query = TraceQuery(model=model, version=version, reason=reason, incident=incident,
                       since_ms=_epoch_ms("since", since), until_ms=_epoch_ms("until", until),
                       limit=limit, cursor=cursor)
    page = await runtime.traces.search_traces(query)
    # Bodies are already JSON: splice them instead of parsing and re-serialising.
    cursor_json = orjson.dumps(page.next_cursor)
    # Incident links made after a trace was built are spliced in (trace_body).
    body = (b'{"traces":[' + b",".join(trace_body(t) for t in page.items)
            + b'],"next_cursor":')
    return Response(body + cursor_json + b"}", media_type="application/json")
