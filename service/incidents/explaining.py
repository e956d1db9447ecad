"""Explaining retained records for an incident (attach and backfill); traces are linked."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from service.errors import InputsExpired
from service.explain_queue import enqueue_explanations
from service.ingest import explain_and_store, now_ms, replay_envelope
from service.model_loader import ReadyModel
from service.runtime import Runtime
from service.sampling.document import INCIDENT_REASON
from service.trace_builder import TraceRequest
from service.validation import Envelope
from storage.records import StoredRecord


@dataclass(slots=True)
class ExplainOutcome:
    """Which records an incident explanation covered, and why the others were not."""

    explained: list[str] = field(default_factory=list)
    inputs_expired: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    queued: list[str] = field(default_factory=list)
    """Handed to `whylens worker` through the job stream (queue mode)."""


async def replay_records(runtime: Runtime, records: Sequence[StoredRecord],
                         outcome: ExplainOutcome) -> list[Envelope]:
    """Open the records' sealed inputs; those past retention are noted in `outcome`."""
    envelopes = []
    for record in records:
        try:
            envelopes.append(await replay_envelope(runtime, record))
        except InputsExpired:
            outcome.inputs_expired.append(record.request_id)
    return envelopes


async def explain_for_incident(runtime: Runtime, incident_id: str,
                               envelopes: Sequence[Envelope],
                               outcome: ExplainOutcome | None = None, *,
                               queue: bool = False) -> ExplainOutcome:
    """Explain logged records (reason `incident`); their traces are stored and linked.

    With `queue`, in queue mode the records become explanation jobs for `whylens worker`
    (which links them too) instead. An explainer failure is logged and counted by ingest
    and reported per record here.
    """
    outcome = outcome or ExplainOutcome()
    if not envelopes:
        return outcome
    requests: list[tuple[ReadyModel, TraceRequest]] = []
    received = now_ms()
    for envelope in envelopes:
        ready = await runtime.loader.get(envelope.model, envelope.version)
        label = runtime.policy.policy(envelope.model).label
        requests.append((ready, TraceRequest(envelope, INCIDENT_REASON, label, received,
                                             incidents=(incident_id,))))
    if queue and await enqueue_explanations(runtime, requests):
        outcome.queued += [envelope.request_id for envelope in envelopes]
        return outcome
    bodies = await explain_and_store(runtime, requests, strict=False)
    for envelope in envelopes:
        target = outcome.explained if envelope.request_id in bodies else outcome.failed
        target.append(envelope.request_id)
    return outcome
