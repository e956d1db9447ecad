"""POST /v1/labels: delayed ground truth by request ID."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from service.deps import IngestCaller, RuntimeDep, read_json_body
from service.drift.labels import ingest_labels
from service.errors import BodyMalformed, FieldError, RecordInvalid
from service.ingest import now_ms

router = APIRouter(tags=["ingest"])


@router.post("/v1/labels")
async def post_labels(request: Request, runtime: RuntimeDep, caller: IngestCaller) -> Response:
    """Accept `{"labels": [{request_id, label, timestamp?}]}`; per-label status in order."""
    body = await read_json_body(request, runtime.settings.limits.body_bytes)
    if not isinstance(body, dict) or set(body) != {"labels"} or \
            not isinstance(body["labels"], list):
        raise BodyMalformed("expected {\"labels\": [{\"request_id\": ..., \"label\": ...}]}")
    labels = body["labels"]
    limit = runtime.settings.limits.batch_records
    if not labels or len(labels) > limit:
        raise RecordInvalid([FieldError("labels", f"expected 1 to {limit} labels, "
                                                  f"got {len(labels)}")])
    outcomes = await ingest_labels(runtime.records, runtime.drift, runtime.loader, labels,
                                   now_ms=now_ms())
    return Response(orjson.dumps({"labels": [o.as_json() for o in outcomes]}),
                    media_type="application/json")
