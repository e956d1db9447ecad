"""Ingest: validate each record, log it with sealed inputs, and explain the sampled ones."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
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
from service.explaining import explain_and_store, explain_traces, store_traces
from service.model_loader import ReadyModel
from service.retention import Retention, retention_for
from service.runtime import Runtime
from service.sampling.policy import SamplingDecision, decision_fields, sampling_label
from service.sampling.trace_fields import logged_trace_fields, trace_request_fields
from service.spooling import spool_records
from service.trace_builder import TraceRequest, iso_ms
from service.validation import Envelope, check_features, parse_envelope
from storage.errors import StoreUnavailable
from storage.records import StoredRecord, StoredTrace

# explain_and_store lives in service.explaining; it stays importable from here.
__all__ = ["IngestResult", "RecordOutcome", "explain_and_store", "ingest", "now_ms",
           "replay_envelope", "to_explain_requests"]

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
    # Models resolved once per call: a batch names the same one or two hundreds of times.
    models: dict[tuple[str, str | None], ReadyModel] = {}
    for index, raw in enumerate(raws):
        path = f"records[{index}]" if batch else ""
        result = await _validate(runtime, raw, path=path, received_ms=received,
                                 traceparent=traceparent, batch=batch, models=models)
        if isinstance(result, list):
            rid = raw.get("request_id") if isinstance(raw, dict) else None
            outcomes[index] = RecordOutcome(rid if isinstance(rid, str) else None, False,
                                            errors=result)
            continue
        valid.append((index, *result))
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
                    traceparent: str | None, batch: bool,
                    models: dict[tuple[str, str | None], ReadyModel]
                    ) -> tuple[Envelope, ReadyModel] | list[FieldError]:
    limits = runtime.settings.limits
    envelope = parse_envelope(raw, path=path, received_ms=received_ms,
                              max_string=limits.string_chars, traceparent=traceparent)
    if isinstance(envelope, list):
        return envelope
    ready = models.get((envelope.model, envelope.version))
    if ready is None:
        try:
            ready = await runtime.loader.get(envelope.model, envelope.version)
        except (ModelUnknown, VersionUnknown) as exc:
            if not batch:
                raise
            where = "model" if isinstance(exc, ModelUnknown) else "version"
            return [FieldError(f"{path}.{where}", str(exc))]
        await runtime.policy.ensure_loaded(ready.manifest.name)
        models[(envelope.model, envelope.version)] = ready
    errors = check_features(envelope.features, ready.rules, path=path, model_label=ready.label,
                            max_string=limits.string_chars)
    return errors or (envelope, ready)


def _stored_records(runtime: Runtime, accepted: list[_Accepted],
                    received_ms: int) -> list[StoredRecord]:
    received_at = iso_ms(received_ms)
    # Per call, not per record: one model's retention and a batch's few event times.
    retentions: dict[tuple[str, str], Retention] = {}
    times: dict[int, str] = {received_ms: received_at}
    stored = []
    for item in accepted:
        envelope, manifest = item.envelope, item.ready.manifest
        timestamp = times.get(envelope.event_ms)
        if timestamp is None:
            timestamp = times[envelope.event_ms] = iso_ms(envelope.event_ms)
        body = {
            "request_id": envelope.request_id, "model": manifest.name,
            "version": manifest.version, "requested_version": envelope.version,
            "timestamp": timestamp, "received_at": received_at,
            "prediction": envelope.prediction, "action": envelope.action,
            "context": envelope.context, "sampled": item.sampled, "reason": item.reason,
            "policy": item.policy,
        }
        if item.decision is not None:
            body.update(decision_fields(item.decision))
        sealed = runtime.sealer.seal(orjson.dumps(envelope.features),
                                     request_id=envelope.request_id)
        retention = retentions.get((manifest.name, manifest.version))
        if retention is None:
            retention = retentions[(manifest.name, manifest.version)] = retention_for(
                runtime.settings.retention, manifest)
        stored.append(StoredRecord(
            request_id=envelope.request_id, model=manifest.name, version=manifest.version,
            event_ms=envelope.event_ms, received_ms=received_ms, sampled=item.sampled,
            reason=item.reason, body=orjson.dumps(body), sealed_inputs=sealed,
            ttl_s=retention.records_s, inputs_ttl_s=retention.inputs_s,
        ))
    return stored


async def _store_and_explain(runtime: Runtime, accepted: list[_Accepted],
                             outcomes: list[RecordOutcome | None], received_ms: int,
                             force_explain: bool) -> dict[str, bytes]:
    stored = _stored_records(runtime, accepted, received_ms)
    # Explain the records that will need it while they are logged: the kernel runs
    # without the GIL, so the store round trips and drift counting overlap it. Only
    # records found to be duplicates throw their early trace away.
    early = _explain_early(runtime, accepted, received_ms, force_explain)
    try:
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
        # Every new record (sampled or not) counts in the live drift windows; duplicates
        # don't.
        await runtime.drift.record([(item.ready, item.envelope)
                                    for item, earlier in zip(accepted, existing, strict=True)
                                    if earlier is None])
        to_explain = await _settle_outcomes(runtime, accepted, existing, outcomes,
                                            force_explain)
        if not to_explain:
            return {}
        new = {item.envelope.request_id for item, earlier
               in zip(accepted, existing, strict=True) if earlier is None}
        traces = [] if early is None else [t for t in await early if t.request_id in new]
        early = None
        explained = {t.request_id for t in traces}
        rest = [item for item in to_explain if item.envelope.request_id not in explained]
        if rest:
            requests = to_explain_requests(rest, received_ms)
            if force_explain or not await enqueue_explanations(runtime, requests):
                traces += await explain_traces(runtime, requests, strict=force_explain)
        return await store_traces(runtime, traces)
    finally:
        if early is not None:
            await _abandon(early)


def _explain_early(runtime: Runtime, accepted: list[_Accepted], received_ms: int,
                   force_explain: bool) -> asyncio.Task[list[StoredTrace]] | None:
    """Start explaining the records to be explained inline, unless jobs go to a queue."""
    scale_out = runtime.scale_out
    if not force_explain and scale_out is not None and scale_out.queue_mode:
        return None
    # A request ID repeated in the batch is logged (and so explained) by its first copy.
    firsts = {item.envelope.request_id: item for item in reversed(accepted)}
    wanted = [item for item in accepted if (item.sampled or force_explain)
              and firsts[item.envelope.request_id] is item]
    if not wanted:
        return None
    return asyncio.create_task(explain_traces(
        runtime, to_explain_requests(wanted, received_ms), strict=force_explain))


async def _abandon(task: asyncio.Task[list[StoredTrace]]) -> None:
    # The thread cannot be stopped; wait for it so its failure is not left unretrieved.
    with contextlib.suppress(ExplainerError):
        await task


async def _settle_outcomes(runtime: Runtime, accepted: list[_Accepted],
                           existing: list[StoredRecord | None],
                           outcomes: list[RecordOutcome | None],
                           force_explain: bool) -> list[_Accepted]:
    """Answer each logged record; return those to explain (new ones and healing retries)."""
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
    return to_explain


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
    # Counted per label set, not per record: a labels() lookup costs more than inc().
    decisions: Counter[tuple[str, str]] = Counter(
        (item.ready.manifest.name, sampling_label(item.sampled, item.reason, item.decision))
        for item in accepted)
    for (model, label), count in decisions.items():
        metrics.sampling.labels(model, label).inc(count)
    for model, count in Counter(item.ready.manifest.name for item in accepted).items():
        metrics.records.labels(model, "accepted").inc(count)
    rejected = sum(1 for o in outcomes if o is not None and not o.accepted)
    if rejected:
        metrics.records.labels("_", "rejected").inc(rejected)
