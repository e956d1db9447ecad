"""GET /ui/...: the triage pages (HTML), same auth as the API's read endpoints."""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from starlette.responses import FileResponse, RedirectResponse, Response

from service.deps import ReadCaller, RuntimeDep
from service.ui.fleet_page import fleet_view
from service.ui.incident_page import incident_view
from service.ui.model_page import ModelAsk, model_view
from service.ui.rendering import STATIC_DIR, render
from service.ui.trace_page import load_trace, trace_view

router = APIRouter(prefix="/ui", include_in_schema=False)

STATIC = {"whylens.css": "text/css", "whylens.js": "text/javascript"}
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _missing(request: Request, heading: str, message: str, *, search: str = "",
             status_code: int = 404) -> Response:
    return render(request.app, "not_found.html",
                  {"heading": heading, "message": message, "search_value": search},
                  status_code=status_code)


@router.get("/")
async def fleet(request: Request, runtime: RuntimeDep, caller: ReadCaller) -> Response:
    """Every model with its worst drift status and open incidents."""
    return render(request.app, "fleet.html", await fleet_view(runtime))


@router.get("/search")
async def search(request: Request, runtime: RuntimeDep, caller: ReadCaller,
                 request_id: Annotated[str, Query(max_length=256)] = "") -> Response:
    """Go to the trace of a request ID, or say why there is none."""
    wanted = request_id.strip()
    if not _REQUEST_ID.match(wanted):
        return _missing(request, "Not a request ID",
                        "A request ID is 1–128 letters, digits and . _ : -",
                        search=wanted[:128], status_code=422)
    if await runtime.traces.get_trace(wanted) is None:
        return _missing(request, "No trace",
                        f"No trace for request ID {wanted}: it was not explained (not "
                        "sampled), is past retention, or was never logged. POST /v1/explain "
                        "with the request ID explains a logged record now.", search=wanted)
    return RedirectResponse(f"/ui/traces/{quote(wanted, safe='')}", status_code=303)


@router.get("/traces/{request_id}")
async def trace(request_id: str, request: Request, runtime: RuntimeDep,
                caller: ReadCaller) -> Response:
    """One decision: waterfall, outcome, drift context, counterfactuals, incidents."""
    document = await load_trace(runtime, request_id)
    if document is None:
        return _missing(request, "No trace", f"No trace for request ID {request_id}.",
                        search=request_id[:128])
    return render(request.app, "trace.html", trace_view(document))


@router.get("/models/{name}")
async def model(
    name: str, request: Request, runtime: RuntimeDep, caller: ReadCaller,
    version: Annotated[str | None, Query(max_length=128)] = None,
    window: Annotated[str, Query(max_length=16)] = "1h",
    windows: Annotated[int, Query(ge=1, le=24)] = 8,
    segment: Annotated[str | None, Query(max_length=300)] = None,
) -> Response:
    """Versions, identity, drift heat map, score distribution and sampling reasons."""
    view = await model_view(runtime, ModelAsk(name, version, window, windows, segment))
    if view is None:
        return _missing(request, "No such model", f"No published model named {name}.")
    return render(request.app, "model.html", view)


@router.get("/incidents/{incident_id}")
async def incident(
    incident_id: str, request: Request, runtime: RuntimeDep, caller: ReadCaller,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Response:
    """State, counts, attribution shift, drift, canary differences and attached traces."""
    view = await incident_view(runtime, incident_id, cursor=cursor)
    if view is None:
        return _missing(request, "No such incident", f"No incident {incident_id}.")
    return render(request.app, "incident.html", view)


@router.get("/static/{name}")
async def static(name: str) -> Response:
    """The pages' stylesheet and script, served by the service itself (no CDN)."""
    media_type = STATIC.get(name)
    if media_type is None:
        return Response(status_code=404)
    return FileResponse(STATIC_DIR / name, media_type=media_type,
                        headers={"X-Content-Type-Options": "nosniff",
                                 "Cache-Control": "max-age=300"})

