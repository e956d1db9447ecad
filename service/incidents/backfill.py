"""Incident backfills: explain the retained-but-unexplained records of a window.

A backfill is an outbox job: it walks the model's record log newest first, one page per
step, saving its cursor and counters after each page, so it resumes after a restart and
its progress shows in `GET /v1/incidents/{id}`.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import jmespath
import orjson
from jmespath import exceptions as jmespath_errors

from service.errors import FieldError, RecordInvalid
from service.incidents.bodies import BackfillBody
from service.incidents.explaining import ExplainOutcome, explain_for_incident, replay_records
from service.incidents.jobs import BACKFILL, detail_of, now_ms, updated
from service.runtime import Runtime
from service.sampling.document import expression_error
from service.sampling.engine import record_view
from service.sampling.functions import PolicyFunctions
from service.sampling.rules import truthy
from service.trace_builder import iso_ms
from service.validation import Envelope
from storage.incidents.records import (
    JOB_DONE,
    JOB_FAILED,
    JOB_QUEUED,
    JOB_RUNNING,
    StoredIncident,
    StoredJob,
)
from storage.records import RecordQuery

COUNTERS = ("scanned", "explained", "already_explained", "filtered_out", "inputs_expired",
            "failed", "queued")


async def start_backfill(runtime: Runtime, incident: StoredIncident,
                         body: BackfillBody) -> StoredJob:
    """Validate the window and filter, queue the backfill job and wake the worker."""
    since_ms = int(body.since.timestamp() * 1000)
    until_ms = now_ms() if body.until is None else int(body.until.timestamp() * 1000)
    errors = []
    if until_ms <= since_ms:
        errors.append(FieldError("until", "must be after since"))
    if body.where is not None:
        message = expression_error(body.where, PolicyFunctions())
        if message is not None:
            errors.append(FieldError("where", message))
    if errors:
        raise RecordInvalid(errors)
    created = now_ms()
    detail: dict[str, Any] = {
        "since": iso_ms(since_ms), "until": iso_ms(until_ms), "where": body.where,
        "since_ms": since_ms, "until_ms": until_ms, "cursor": None,
        **dict.fromkeys(COUNTERS, 0), "started_at": None, "finished_at": None,
        "last_error": None,
    }
    job = StoredJob(job_id=f"{incident.incident_id}:backfill:{secrets.token_hex(6)}",
                    incident_id=incident.incident_id, kind=BACKFILL, state=JOB_QUEUED,
                    attempts=0, due_ms=created, created_ms=created, updated_ms=created,
                    detail=orjson.dumps(detail))
    stored = await runtime.incidents.store.enqueue_job(job, None)
    runtime.incidents.nudge()
    return stored


async def run_backfill_step(runtime: Runtime, job: StoredJob) -> StoredJob:
    """Process pages for about `incidents.backfill_slice_s`; save progress; return the job.

    The job is left due at once when pages remain (other jobs interleave), done at the
    end of the window.
    """
    settings = runtime.settings
    store = runtime.incidents.store
    detail = detail_of(job)
    incident = await store.get_incident(job.incident_id)
    if incident is None:
        detail["last_error"] = "the incident no longer exists"
        job = updated(job, detail, state=JOB_FAILED)
        await store.save_job(job)
        return job
    where = None if detail["where"] is None else jmespath.compile(detail["where"])
    options = jmespath.Options(custom_functions=PolicyFunctions())
    detail["started_at"] = detail["started_at"] or iso_ms(now_ms())
    deadline = time.monotonic() + settings.incidents.backfill_slice_s
    lease_ms = int(settings.outbox.lease_s * 1000)
    while True:
        page = await runtime.incidents.traces.list_records(RecordQuery(
            model=incident.model, since_ms=detail["since_ms"], until_ms=detail["until_ms"],
            limit=settings.incidents.backfill_page, cursor=detail["cursor"]))
        await _explain_page(runtime, incident, page.items, where=where, options=options,
                            detail=detail)
        runtime.incidents.metrics.backfill.labels("scanned").inc(len(page.items))
        detail["cursor"] = page.next_cursor
        if page.next_cursor is None:
            detail["finished_at"] = iso_ms(now_ms())
            job = updated(job, detail, state=JOB_DONE, attempts=job.attempts + 1)
            await store.save_job(job)
            return job
        running = time.monotonic() < deadline
        # Still running: keep the lease; yielding: due now, so other jobs go first.
        job = updated(job, detail, state=JOB_RUNNING,
                      due_ms=now_ms() + (lease_ms if running else 0))
        await store.save_job(job)
        if not running:
            return job


async def _explain_page(runtime: Runtime, incident: StoredIncident, records: list[Any], *,
                        where: Any, options: jmespath.Options, detail: dict[str, Any]) -> None:
    unexplained = []
    for record in records:
        detail["scanned"] += 1
        if await runtime.traces.get_trace(record.request_id) is not None:
            detail["already_explained"] += 1
        else:
            unexplained.append(record)
    outcome = ExplainOutcome()
    envelopes = await replay_records(runtime, unexplained, outcome)
    chosen: list[Envelope] = []
    for envelope in envelopes:
        if where is None or _matches(where, options, envelope=envelope, model=incident.model):
            chosen.append(envelope)
        else:
            detail["filtered_out"] += 1
    await explain_for_incident(runtime, incident.incident_id, chosen, outcome, queue=True)
    for counter in ("explained", "inputs_expired", "failed", "queued"):
        detail[counter] = detail.get(counter, 0) + len(getattr(outcome, counter))
    runtime.incidents.metrics.backfill.labels("explained").inc(len(outcome.explained))


def _matches(where: Any, options: jmespath.Options, *, envelope: Envelope, model: str) -> bool:
    try:
        return truthy(where.search(record_view(envelope, model, envelope.version or ""),
                                   options=options))
    except jmespath_errors.JMESPathError:
        return False
