"""Replay the outage spool into the store once it answers again, oldest record first.

Replays are idempotent by request ID: a chunk cut short by a new failure is replayed
again from its start, and records stored meanwhile (a client retry) come back as
duplicates whose first decision stands. A new record counts in the drift windows and,
when sampled, is explained (queued in queue mode) and linked to the incidents it was
accepted under, exactly as at ingest.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import orjson

from service.errors import ServiceError
from service.explain_queue import enqueue_explanations
from service.ingest import explain_and_store, replay_envelope
from service.log_format import log_context
from service.model_loader import ReadyModel
from service.runtime import Runtime
from service.sampling.trace_fields import logged_trace_fields
from service.trace_builder import TraceRequest
from service.validation import Envelope
from storage.errors import StorageError, StoreUnavailable
from storage.records import StoredRecord

logger = logging.getLogger(__name__)


async def replay_spool(runtime: Runtime) -> int:
    """Replay while the store answers; return how many records were replayed.

    Raises:
        StoreUnavailable: the store failed mid-replay (the rest waits for the next call).
    """
    scale_out = runtime.scale_out
    if scale_out is None or scale_out.spool is None:
        return 0
    spool = scale_out.spool
    depth = await spool.depth()
    scale_out.metrics.spool_records.set(depth.records)
    scale_out.metrics.spool_bytes.set(depth.bytes)
    if not depth.records:
        return 0
    await runtime.traces.ping()
    replayed = 0
    batch = runtime.settings.spool.replay_batch
    while True:
        chunk = await spool.read(batch)
        if not chunk.records:
            break
        await replay_records(runtime, chunk.records)
        await spool.commit(chunk.end)
        replayed += len(chunk.records)
        scale_out.metrics.spool_replayed.inc(len(chunk.records))
    depth = await spool.depth()
    scale_out.metrics.spool_records.set(depth.records)
    scale_out.metrics.spool_bytes.set(depth.bytes)
    logger.info("replayed %d spooled records into the %s store (%d left)", replayed,
                runtime.traces.backend, depth.records)
    return replayed


async def replay_records(runtime: Runtime, records: Sequence[StoredRecord]) -> None:
    """Store records, count the new ones in the drift windows, explain the sampled ones."""
    existing = await runtime.records.add_records(records)
    counted: list[tuple[ReadyModel, Envelope]] = []
    to_explain: list[tuple[ReadyModel, TraceRequest]] = []
    for record, earlier in zip(records, existing, strict=True):
        kept = earlier or record
        explain = kept.sampled and (
            earlier is None or await runtime.traces.get_trace(kept.request_id) is None)
        if earlier is not None and not explain:
            continue
        prepared = await _prepare(runtime, kept)
        if prepared is None:
            continue
        ready, envelope = prepared
        if earlier is None:
            counted.append((ready, envelope))
        if explain:
            # The logged decision carries its incidents and counterfactuals: the trace is
            # linked and enriched exactly as it would have been at ingest.
            body = orjson.loads(kept.body)
            to_explain.append((ready, TraceRequest(
                envelope, kept.reason or "sampled", str(body.get("policy", "default")),
                kept.received_ms, **logged_trace_fields(body))))
    if counted:
        await runtime.drift.record(counted)
    if to_explain and not await enqueue_explanations(runtime, to_explain):
        await explain_and_store(runtime, to_explain, strict=False)


async def _prepare(runtime: Runtime,
                   record: StoredRecord) -> tuple[ReadyModel, Envelope] | None:
    try:
        ready = await runtime.loader.get(record.model, record.version)
        envelope = await replay_envelope(runtime, record)
    except StoreUnavailable:
        raise
    except (ServiceError, StorageError) as exc:
        # The record is stored; only its window counts and explanation are lost, and an
        # on-demand explain reports the same error. Never block the spool behind it.
        with log_context(request_id=record.request_id):
            logger.error("replayed record of %s@%s cannot be explained or counted: %s",
                         record.model, record.version, exc)
        return None
    return ready, envelope
