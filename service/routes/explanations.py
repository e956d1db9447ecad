"""POST /v1/explain: explain a logged record by request ID, or a full record, now."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Header, Query, Request
from starlette.responses import Response

from service.compare import compare_versions
from service.counterfactuals import parse_ask
from service.deps import ReadCaller, RuntimeDep, read_json_body
from service.drift.trace_context import attach_drift
from service.errors import BodyMalformed
from service.explain import explain_logged, explain_record
from service.openapi_docs import EXPLAIN_BODY

router = APIRouter(tags=["read"])


@router.post("/v1/explain", openapi_extra=EXPLAIN_BODY)
async def post_explain(
    request: Request, runtime: RuntimeDep, caller: ReadCaller,
    traceparent: Annotated[str | None, Header()] = None,
    counterfactuals: Annotated[int | None, Query(ge=0)] = None,
    compare: Annotated[str | None, Query(max_length=300)] = None,
) -> Response:
    """Return the trace of `{request_id}` (logged record) or of a full record.

    `?counterfactuals=N` (and the body's optional `counterfactuals` object) adds up to N
    counterfactuals to the trace. `?compare=production,canary` (or two versions) explains
    the record under both and returns both outputs and the ranked attribution differences
    instead (nothing is stored).
    """
    body = await read_json_body(request, runtime.settings.limits.body_bytes)
    if not isinstance(body, dict):
        raise BodyMalformed("expected {\"request_id\": ...} or a full record")
    if compare is not None:
        return Response(orjson.dumps(await compare_versions(runtime, body, compare)),
                        media_type="application/json")
    settings = runtime.settings
    ask = parse_ask(counterfactuals, body.pop("counterfactuals", None), limits=settings.limits,
                    settings=settings.counterfactuals)
    if set(body) == {"request_id"} and isinstance(body["request_id"], str):
        trace = await explain_logged(runtime, body["request_id"], counterfactuals=ask)
    else:
        trace = await explain_record(runtime, body, traceparent=traceparent,
                                     counterfactuals=ask)
    return Response(await attach_drift(runtime, trace), media_type="application/json")
