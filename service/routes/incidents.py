"""Incidents: open, list, read (summary and traces), attach, backfill, close, export."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from service.deps import AdminCaller, ReadCaller, RuntimeDep, read_json_body
from service.errors import FieldError, RecordInvalid
from service.incidents.backfill import start_backfill
from service.incidents.bodies import (
    AttachBody,
    BackfillBody,
    ExportBody,
    IncidentCreate,
    parse_body,
)
from service.incidents.export import enqueue_export
from service.incidents.jobs import job_view
from service.incidents.lifecycle import (
    attach_requests,
    close_incident,
    incident_json,
    incident_view,
    open_incident,
    require_incident,
)

router = APIRouter(tags=["incidents"])

MAX_PAGE = 500


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


@router.post("/v1/incidents", status_code=201)
async def post_incident(request: Request, runtime: RuntimeDep, caller: AdminCaller) -> Response:
    """Open an incident; with `explain_all` (default) its model is explained at 100 %."""
    body = parse_body(IncidentCreate, await read_json_body(
        request, runtime.settings.limits.body_bytes))
    incident = await open_incident(runtime, body, caller)
    return _json(incident_json(incident), 201)


@router.get("/v1/incidents")
async def list_incidents(
    runtime: RuntimeDep, caller: ReadCaller,
    state: Literal["open", "closed"] | None = None, model: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> Response:
    """Incidents newest first, optionally by state and model."""
    found = await runtime.incidents.store.list_incidents(open_only=state == "open",
                                                         limit=MAX_PAGE)
    chosen = [i for i in found if (state is None or i.state == state)
              and (model is None or i.model == model)][:limit]
    return _json({"incidents": [incident_json(i) for i in chosen]})


@router.get("/v1/incidents/{incident_id}")
async def get_incident(
    incident_id: str, runtime: RuntimeDep, caller: ReadCaller,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50, cursor: str | None = None,
) -> Response:
    """The incident, a page of its traces (newest first) and, on the first page, the summary."""
    incident = await require_incident(runtime, incident_id)
    return _json(await incident_view(runtime, incident, limit=limit, cursor=cursor))


@router.post("/v1/incidents/{incident_id}/traces")
async def post_incident_traces(incident_id: str, request: Request, runtime: RuntimeDep,
                               caller: AdminCaller) -> Response:
    """Attach request IDs; retained but unexplained ones are explained now."""
    body = parse_body(AttachBody, await read_json_body(
        request, runtime.settings.limits.body_bytes))
    limit = runtime.settings.limits.batch_records
    if len(body.request_ids) > limit:
        raise RecordInvalid([FieldError("request_ids", f"at most {limit} per call")])
    incident = await require_incident(runtime, incident_id)
    return _json(await attach_requests(runtime, incident, body.request_ids))


@router.post("/v1/incidents/{incident_id}/backfill", status_code=202)
async def post_backfill(incident_id: str, request: Request, runtime: RuntimeDep,
                        caller: AdminCaller) -> Response:
    """Explain the window's retained-but-unexplained records; progress shows in GET."""
    body = parse_body(BackfillBody, await read_json_body(
        request, runtime.settings.limits.body_bytes))
    incident = await require_incident(runtime, incident_id)
    job = await start_backfill(runtime, incident, body)
    return _json({"backfill": job_view(job)}, 202)


@router.post("/v1/incidents/{incident_id}/close")
async def post_close(incident_id: str, runtime: RuntimeDep, caller: AdminCaller) -> Response:
    """Close the incident (ends incident mode); its traces stay held."""
    return _json(incident_json(await close_incident(runtime, incident_id, caller)))


@router.post("/v1/incidents/{incident_id}/export", status_code=202)
async def post_export(incident_id: str, request: Request, runtime: RuntimeDep,
                      caller: AdminCaller) -> Response:
    """Queue the bundle for a target; the same bundle is queued (and attached) once."""
    body = parse_body(ExportBody, await read_json_body(
        request, runtime.settings.limits.body_bytes))
    incident = await require_incident(runtime, incident_id)
    job, existed = await enqueue_export(runtime, incident, body.target)
    return _json({"export": job_view(job), "duplicate": existed}, 202)
