"""GET /v1/traces/{request_id} and trace search."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import orjson
from fastapi import APIRouter, Query
from starlette.responses import Response

from service.deps import ReadCaller, RuntimeDep
from service.errors import FieldError, RecordInvalid, TraceNotFound
from storage.records import TraceQuery

router = APIRouter(tags=["read"])

MAX_PAGE = 500


@router.get("/v1/traces/{request_id}")
async def get_trace(request_id: str, runtime: RuntimeDep, caller: ReadCaller) -> Response:
    """Return one trace; 404 problem when unknown or past retention."""
    stored = await runtime.traces.get_trace(request_id)
    if stored is None:
        raise TraceNotFound(request_id)
    return Response(stored.body, media_type="application/json")


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
    body = b'{"traces":[' + b",".join(t.body for t in page.items) + b'],"next_cursor":'
    return Response(body + cursor_json + b"}", media_type="application/json")
