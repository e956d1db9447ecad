"""POST /v1/predictions: log one record or a batch."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Header, Request
from starlette.responses import Response

from service.deps import IngestCaller, RuntimeDep, read_json_body
from service.errors import BodyMalformed, FieldError, RecordInvalid
from service.ingest import ingest
from service.openapi_docs import RECORD_OR_BATCH_BODY

router = APIRouter(tags=["ingest"])


@router.post("/v1/predictions", openapi_extra=RECORD_OR_BATCH_BODY)
async def post_predictions(
    request: Request, runtime: RuntimeDep, caller: IngestCaller,
    traceparent: Annotated[str | None, Header()] = None,
) -> Response:
    """Log one record (422 if invalid) or `{"records": [...]}` (per-record status)."""
    body = await read_json_body(request, runtime.settings.limits.body_bytes)
    if isinstance(body, dict) and "records" in body:
        records = body["records"]
        if not isinstance(records, list) or len(body) != 1:
            raise BodyMalformed("a batch is exactly {\"records\": [...]}")
        limit = runtime.settings.limits.batch_records
        if len(records) > limit:
            raise RecordInvalid([FieldError("records", f"at most {limit} records per batch, "
                                                       f"got {len(records)}")])
        if not records:
            raise RecordInvalid([FieldError("records", "empty batch")])
        result = await ingest(runtime, records, batch=True, traceparent=traceparent)
        payload: dict[str, object] = {"records": [o.as_json() for o in result.outcomes]}
    elif isinstance(body, dict):
        result = await ingest(runtime, [body], batch=False, traceparent=traceparent)
        payload = result.outcomes[0].as_json()
    else:
        raise BodyMalformed("expected a record object or {\"records\": [...]}")
    return Response(orjson.dumps(payload), media_type="application/json")
