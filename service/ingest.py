"""Ingest: validate each record, log it with sealed inputs, and explain the sampled ones."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from explainers.errors import ExplainerError
from service.errors import (
    FieldError,
    InputsExpired,
    ModelUnknown,
    RecordInvalid,
    VersionUnknown,
)
from service.explain_queue import enqueue_explanations
from service.incidents.linking import link_incident_mode_traces
from service.model_loader import ReadyModel
from service.retention import retention_for
from service.runtime import Runtime
from service.sampling.policy import SamplingDecision, decision_fields, sampling_label
from service.sampling.trace_fields import logged_trace_fields, trace_request_fields
from service.spooling import spool_records
from service.trace_builder import TraceRequest, build_traces, iso_ms
from service.validation import Envelope, check_features, parse_envelope
from storage.errors import StoreUnavailable
from storage.records import StoredRecord, StoredTrace

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RecordOutcome:
    """The per-record answer of an ingest call."""

    request_id: str | None
    accepted: bool
    sampled: bool = False
    reason: str | None = None
    duplicate: bool = False
    errors: list[FieldError] = field(default_factory=list)
    deferred: bool = False
    spooled: bool = False

    def as_json(self) -> dict[str, object]:
        """Render the per-record answer of the API."""
        body: dict[str, object] = {
            "request_id": self.request_id,
            "status": "accepted" if self.accepted else "rejected",
            "sampled": self.sampled,
            "reason": self.reason,
            "trace_url": f"/v1/traces/{self.request_id}" if self.sampled else None,
        }
        if self.duplicate:
            body["duplicate"] = True
        if self.deferred:
            body["deferred"] = True
        if self.spooled:
            body["spooled"] = True
        if self.errors:
            body["errors"] = [{"field": e.field, "message": e.message} for e in self.errors]
        return body


@dataclass(slots=True)
class _Accepted:
    index: int
    envelope: Envelope
    ready: ReadyModel
    sampled: bool
    reason: str | None
    policy: str
    decision: SamplingDecision | None = None
    logged: dict[str, Any] | None = None
    """The logged decision of a duplicate re-explained (its incidents, counterfactuals)."""


def now_ms() -> int:
    """Current wall-clock time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class IngestResult:
    """Per-record outcomes in input order, and the trace bodies written by this call."""

    outcomes: list[RecordOutcome]
    traces: dict[str, bytes]


async def ingest(runtime: Runtime, raws: Sequence[object], *, batch: bool,
                 traceparent: str | None, force_explain: bool = False) -> IngestResult:
    """Log records and explain the sampled ones; a single invalid record raises.

    With `batch`, each record is judged on its own and rejected ones carry field errors
    (paths `records[i]...`). Accepted records of a batch are stored even when others
    are rejected; nothing is half-written within a record.
    """
    received = now_ms()
    outcomes: list[RecordOutcome | None] = [None] * len(raws)
    valid: list[tuple[int, Envelope, ReadyModel]] = []
    for index, raw in enumerate(raws):
        path = f"records[{index}]" if batch else ""
        result = await _validate(runtime, raw, path=path, received_ms=received,
                                 traceparent=traceparent, batch=batch)
        if isinstance(result, list):
            rid = raw.get("request_id") if isinstance(raw, dict) else None
            outcomes[index] = RecordOutcome(rid if isinstance(rid, str) else None, False,
                                            errors=result)
            continue
        envelope, ready = result
        await runtime.policy.ensure_loaded(ready.manifest.name)
        valid.append((index, envelope, ready))
    # One budget round trip per model and call (the budget may be shared by replicas).
    decisions = await runtime.policy.decide_all(
        [(envelope, ready.manifest.name, ready.manifest.version)
         for _, envelope, ready in valid])
    accepted = [_Accepted(index, envelope, ready, decision.sampled, decision.reason,
                          decision.policy, decision)
                for (index, envelope, ready), decision in zip(valid, decisions, strict=True)]
    rejected = sum(1 for o in outcomes if o is not None)
    if rejected and not batch:
        first = outcomes[0]
        assert first is not None
        raise RecordInvalid(first.errors)
    traces: dict[str, bytes] = {}
    if accepted:
        traces = await _store_and_explain(runtime, accepted, outcomes, received, force_explain)
    _count(runtime, accepted, outcomes)
    return IngestResult([o for o in outcomes if o is not None], traces)


async def _validate(runtime: Runtime, raw: object, *, path: str, received_ms: int,
                    traceparent: str | None,
                    batch: bool) -> tuple[Envelope, ReadyModel] | list[FieldError]:
    limits = runtime.settings.limits
    envelope = parse_envelope(raw, path=path, received_ms=received_ms,
                              max_string=limits.string_chars, traceparent=traceparent)
    if isinstance(envelope, list):
        return envelope
    try:
        ready = await runtime.loader.get(envelope.model, envelope.version)
    except (ModelUnknown, VersionUnknown) as exc:
        if not batch:
            raise
        where = "model" if isinstance(exc, ModelUnknown) else "version"
        return [FieldError(f"{path}.{where}", str(exc))]
    errors = check_features(envelope.features, ready.rules, path=path, model_label=ready.label,
                            max_string=limits.string_chars)
    return errors or (envelope, ready)


def _stored_record(runtime: Runtime, item: _Accepted, received_ms: int) -> StoredRecord:
    envelope = item.envelope
    body = {
        "request_id": envelope.request_id, "model": item.ready.manifest.name,
        "version": item.ready.manifest.version, "requested_version": envelope.version,
        "timestamp": iso_ms(envelope.event_ms), "received_at": iso_ms(received_ms),
        "prediction": envelope.prediction, "action": envelope.action,
        "context": envelope.context, "sampled": item.sampled, "reason": item.reason,
        "policy": item.policy,
    }
    if item.decision is not None:
        body.update(decision_fields(item.decision))
    sealed = runtime.sealer.seal(orjson.dumps(envelope.features),
                                 request_id=envelope.request_id)
    retention = retention_for(runtime.settings.retention, item.ready.manifest)
    return StoredRecord(
        request_id=envelope.request_id, model=item.ready.manifest.name,
        version=item.ready.manifest.version, event_ms=envelope.event_ms,
        received_ms=received_ms, sampled=item.sampled, reason=item.reason,
        body=orjson.dumps(body), sealed_inputs=sealed,
        ttl_s=retention.records_s, inputs_ttl_s=retention.inputs_s,
    )


async def _store_and_explain(runtime: Runtime, accepted: list[_Accepted],
                             outcomes: list[RecordOutcome | None], received_ms: int,
                             force_explain: bool) -> dict[str, bytes]:
    stored = [_stored_record(runtime, item, received_ms) for item in accepted]
    try:
        existing = await runtime.records.add_records(stored)
    except StoreUnavailable:
        runtime.metrics.store_errors.labels(runtime.traces.backend).inc()
        # Outage: keep the records in the local spool (replayed later) or answer 503.
        if force_explain or not await spool_records(runtime, stored):
            raise
        for item in accepted:
            outcomes[item.index] = RecordOutcome(
                item.envelope.request_id, True, item.sampled, item.reason, spooled=True,
                deferred=item.decision is not None and item.decision.deferred)
        return {}
    # Every new record (sampled or not) counts in the live drift windows; duplicates don't.
    await runtime.drift.record([(item.ready, item.envelope)
                                for item, earlier in zip(accepted, existing, strict=True)
                                if earlier is None])
    to_explain: list[_Accepted] = []
    for item, earlier in zip(accepted, existing, strict=True):
        rid = item.envelope.request_id
        if earlier is None:
            outcomes[item.index] = RecordOutcome(
                rid, True, item.sampled, item.reason,
                deferred=item.decision is not None and item.decision.deferred)
            if item.sampled or force_explain:
                to_explain.append(item)
            continue
        # The first decision stands; a sampled duplicate whose trace was lost (store
        # failure between the two writes) is explained again so retries heal it.
        outcomes[item.index] = RecordOutcome(rid, True, earlier.sampled, earlier.reason,
                                             duplicate=True, deferred=earlier.deferred)
        if (earlier.sampled or force_explain) and await runtime.traces.get_trace(rid) is None:
            replay = await replay_envelope(runtime, earlier)
            to_explain.append(_Accepted(item.index, replay, item.ready, earlier.sampled,
                                        earlier.reason, item.policy,
                                        logged=orjson.loads(earlier.body)))
    if not to_explain:
        return {}
    requests = to_explain_requests(to_explain, received_ms)
    if not force_explain and await enqueue_explanations(runtime, requests):
        return {}
    return await explain_and_store(runtime, requests, strict=force_explain)


def to_explain_requests(items: list[_Accepted],
                        received_ms: int) -> list[tuple[ReadyModel, TraceRequest]]:
    """Pair each record to explain with its model and reason."""
    return [
        (item.ready, TraceRequest(item.envelope, item.reason or "on_demand", item.policy,
                                  received_ms,
                                  **(trace_request_fields(item.decision) if item.logged is None
                                     else logged_trace_fields(item.logged))))
        for item in items
    ]


async def explain_and_store(runtime: Runtime, requests: list[tuple[ReadyModel, TraceRequest]],
                            *, strict: bool) -> dict[str, bytes]:
    """Explain grouped by model version (one batch call each) and store the traces.

    With `strict`, an explainer failure propagates (an explicit explain call); otherwise
    it is logged and counted, and the record stays logged for a later on-demand explain.
    """
    groups: dict[tuple[str, str], list[TraceRequest]] = defaultdict(list)
    models: dict[tuple[str, str], ReadyModel] = {}
    for ready, request in requests:
        key = (ready.manifest.name, ready.manifest.version)
        groups[key].append(request)
        models[key] = ready
    traces: list[StoredTrace] = []
    for key, group in groups.items():
        ready = models[key]
        started = time.perf_counter()
        try:
            built = await asyncio.to_thread(build_traces, ready, group, runtime.trace_options)
        except ExplainerError:
            runtime.metrics.explain_failures.labels(key[0]).inc(len(group))
            if strict:
                raise
            logger.exception("explaining %d records of %s failed", len(group), ready.label)
            continue
        method = ready.explainer.method
        runtime.metrics.explain_seconds.labels(method).observe(time.perf_counter() - started)
        runtime.metrics.explanations.labels(method).inc(len(group))
        traces_s = retention_for(runtime.settings.retention, ready.manifest).traces_s
        traces.extend(replace(trace, ttl_s=traces_s) for trace in built)
    if traces:
        try:
            await runtime.traces.put_traces(traces)
        except StoreUnavailable:
            runtime.metrics.store_errors.labels(runtime.traces.backend).inc()
            raise
        # Linked traces are held past retention and listed on their incidents.
        await link_incident_mode_traces(runtime, {t.request_id: t.incidents for t in traces
                                                  if t.incidents})
    return {t.request_id: t.body for t in traces}


async def replay_envelope(runtime: Runtime, record: StoredRecord) -> Envelope:
    """Rebuild a logged record's envelope from its log entry and sealed inputs."""
    body = orjson.loads(record.body)
    if not record.sealed_inputs:
        raise InputsExpired(record.request_id)
    features = orjson.loads(runtime.sealer.open(record.sealed_inputs,
                                                request_id=record.request_id))
    return Envelope(
        request_id=record.request_id, model=record.model, version=record.version,
        features=features, prediction=body.get("prediction", {}),
        timestamp=body.get("timestamp"), event_ms=record.event_ms,
        action=body.get("action"), context=body.get("context", {}),
    )


def _count(runtime: Runtime, accepted: list[_Accepted],
           outcomes: list[RecordOutcome | None]) -> None:
    metrics = runtime.metrics
    for item in accepted:
        model = item.ready.manifest.name
        metrics.sampling.labels(model, sampling_label(item.sampled, item.reason,
                                                      item.decision)).inc()
        metrics.records.labels(model, "accepted").inc()
    rejected = sum(1 for o in outcomes if o is not None and not o.accepted)
    if rejected:
        metrics.records.labels("_", "rejected").inc(rejected)
