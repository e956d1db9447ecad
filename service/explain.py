"""On-demand explanation of a logged record, or of a full record sent to /v1/explain."""

from __future__ import annotations

import orjson

from service.errors import RecordNotFound, TraceNotFound
from service.ingest import explain_and_store, ingest, now_ms, replay_envelope
from service.runtime import Runtime
from service.trace_builder import TraceRequest


async def explain_logged(runtime: Runtime, request_id: str) -> bytes:
    """Explain a record from the prediction log (its sealed inputs) and store the trace."""
    record = await runtime.records.get_record(request_id)
    if record is None:
        raise RecordNotFound(request_id)
    ready = await runtime.loader.get(record.model, record.version)
    envelope = await replay_envelope(runtime, record)
    body = orjson.loads(record.body)
    request = TraceRequest(envelope, record.reason or "on_demand",
                           str(body.get("policy", "on_demand")), now_ms())
    traces = await explain_and_store(runtime, [(ready, request)], strict=True)
    return traces[request_id]


async def explain_record(runtime: Runtime, raw: object, *, traceparent: str | None) -> bytes:
    """Log a full record exactly like ingest (idempotently), then return its trace."""
    result = await ingest(runtime, [raw], batch=False, traceparent=traceparent,
                          force_explain=True)
    outcome = result.outcomes[0]
    assert outcome.request_id is not None
    body = result.traces.get(outcome.request_id)
    if body is not None:
        return body
    stored = await runtime.traces.get_trace(outcome.request_id)
    if stored is None:
        raise TraceNotFound(outcome.request_id)
    return stored.body
