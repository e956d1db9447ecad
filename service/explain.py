"""On-demand explanation of a logged record, or of a full record sent to /v1/explain."""

from __future__ import annotations

import orjson

from service.counterfactuals import CounterfactualAsk, build_request
from service.errors import ModelUnknown, RecordNotFound, TraceNotFound, VersionUnknown
from service.ingest import explain_and_store, ingest, now_ms, replay_envelope
from service.runtime import Runtime
from service.trace_builder import TraceRequest


async def explain_logged(runtime: Runtime, request_id: str, *,
                         counterfactuals: CounterfactualAsk | None = None) -> bytes:
    """Explain a record from the prediction log (its sealed inputs) and store the trace."""
    record = await runtime.records.get_record(request_id)
    if record is None:
        raise RecordNotFound(request_id)
    ready = await runtime.loader.get(record.model, record.version)
    envelope = await replay_envelope(runtime, record)
    if counterfactuals is not None:
        build_request(ready, counterfactuals, envelope.prediction,
                      runtime.settings.counterfactuals)
    body = orjson.loads(record.body)
    # A re-explanation replaces the stored trace: it keeps the incidents it is linked to.
    earlier = await runtime.traces.get_trace(request_id)
    request = TraceRequest(envelope, record.reason or "on_demand",
                           str(body.get("policy", "on_demand")), now_ms(),
                           counterfactuals=counterfactuals,
                           incidents=() if earlier is None else earlier.incidents)
    traces = await explain_and_store(runtime, [(ready, request)], strict=True)
    return traces[request_id]


async def explain_record(runtime: Runtime, raw: object, *, traceparent: str | None,
                         counterfactuals: CounterfactualAsk | None = None) -> bytes:
    """Log a full record exactly like ingest (idempotently), then return its trace.

    With counterfactuals, the ask is checked against the model first, the record is
    logged like any ingest, and then explained from the log with the search.
    """
    if counterfactuals is not None:
        await _check_ask(runtime, raw, counterfactuals)
        result = await ingest(runtime, [raw], batch=False, traceparent=traceparent)
        request_id = result.outcomes[0].request_id
        assert request_id is not None
        return await explain_logged(runtime, request_id, counterfactuals=counterfactuals)
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


async def _check_ask(runtime: Runtime, raw: object, ask: CounterfactualAsk) -> None:
    """Refuse a bad ask before the record is logged (the record's own errors come later)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("model"), str):
        return
    version = raw.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, str | int)):
        return
    try:
        ready = await runtime.loader.get(raw["model"], None if version is None else str(version))
    except (ModelUnknown, VersionUnknown):
        return  # ingest reports it exactly as POST /v1/predictions would
    prediction = raw.get("prediction")
    build_request(ready, ask, prediction if isinstance(prediction, dict) else {},
                  runtime.settings.counterfactuals)
