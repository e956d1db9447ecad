"""POST /v1/explain: explain a logged record by request ID, or a full record, now."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from starlette.responses import Response

from service.deps import ReadCaller, RuntimeDep, read_json_body
from service.errors import BodyMalformed
from service.explain import explain_logged, explain_record
from service.openapi_docs import EXPLAIN_BODY

router = APIRouter(tags=["read"])


@router.post("/v1/explain", openapi_extra=EXPLAIN_BODY)
async def post_explain(
    request: Request, runtime: RuntimeDep, caller: ReadCaller,
    traceparent: Annotated[str | None, Header()] = None,
) -> Response:
    """Return the trace of `{request_id}` (logged record) or of a full record."""
    body = await read_json_body(request, runtime.settings.limits.body_bytes)
    if not isinstance(body, dict):
        raise BodyMalformed("expected {\"request_id\": ...} or a full record")
    if set(body) == {"request_id"} and isinstance(body["request_id"], str):
        trace = await explain_logged(runtime, body["request_id"])
    else:
        trace = await explain_record(runtime, body, traceparent=traceparent)
    return Response(trace, media_type="application/json")
