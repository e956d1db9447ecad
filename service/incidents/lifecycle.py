"""Open, close, attach and read incidents (incident mode changes sampling)."""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson

from service.auth import Caller
from service.errors import IncidentExists, IncidentNotFound, ModelUnknown
from service.incidents.bodies import IncidentCreate
from service.incidents.explaining import ExplainOutcome, explain_for_incident, replay_records
from service.incidents.holds import release_incident
from service.incidents.jobs import job_view
from service.incidents.linking import link_traces
from service.incidents.summary import summarize
from service.incidents.trace_view import trace_entry
from service.ingest import now_ms
from service.runtime import Runtime
from service.trace_builder import iso_ms
from storage.incidents.records import INCIDENT_CLOSED, INCIDENT_OPEN, StoredIncident
from storage.records import StoredRecord, TraceQuery


def new_incident_id() -> str:
    """An ID for an incident opened without one (`WL-20261125-3F9A0C1D`)."""
    return f"WL-{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(4).upper()}"


async def open_incident(runtime: Runtime, body: IncidentCreate,
                        caller: Caller) -> StoredIncident:
    """Create the incident and, with `explain_all`, put its model in incident mode."""
    if body.model not in await runtime.loader.catalog.list_models():
        raise ModelUnknown(body.model)
    incident = StoredIncident(
        incident_id=body.id or new_incident_id(), model=body.model, title=body.title,
        severity=body.severity, state=INCIDENT_OPEN, explain_all=body.explain_all,
        opened_ms=now_ms(), opened_by=caller.name)
    if not await runtime.incidents.store.create_incident(incident):
        raise IncidentExists(incident.incident_id)
    runtime.policy.open_incident(incident)
    return incident


async def require_incident(runtime: Runtime, incident_id: str) -> StoredIncident:
    """The incident, or IncidentNotFound."""
    incident = await runtime.incidents.store.get_incident(incident_id)
    if incident is None:
        raise IncidentNotFound(incident_id)
    return incident


async def close_incident(runtime: Runtime, incident_id: str, caller: Caller) -> StoredIncident:
    """Close the incident (idempotent) and release the hold of its traces.

    They are kept until the close plus the incident retention of its model (longer when
    another open or later-released incident holds them). Closing again repeats the release,
    which repairs a release interrupted by a store failure.
    """
    incident = await require_incident(runtime, incident_id)
    if incident.is_open:
        incident = replace(incident, state=INCIDENT_CLOSED, closed_ms=now_ms(),
                           closed_by=caller.name)
        await runtime.incidents.store.save_incident(incident)
    runtime.policy.close_incident(incident)
    await release_incident(runtime, incident)
    return incident


async def attach_requests(runtime: Runtime, incident: StoredIncident,
                          request_ids: list[str]) -> dict[str, Any]:
    """Attach traces; a request with retained inputs but no trace is explained first."""
    linked = await link_traces(runtime, incident.incident_id, request_ids)
    done = set(linked)
    missing: list[str] = []
    other_model: list[str] = []
    records: list[StoredRecord] = []
    for request_id in request_ids:
        if request_id in done:
            continue
        record = await runtime.records.get_record(request_id)
        if record is None:
            missing.append(request_id)
        elif record.model != incident.model:
            other_model.append(request_id)
        else:
            records.append(record)
    outcome = ExplainOutcome()
    envelopes = await replay_records(runtime, records, outcome)
    await explain_for_incident(runtime, incident.incident_id, envelopes, outcome)
    answer: dict[str, Any] = {
        "incident": incident.incident_id,
        "attached": [r for r in request_ids if r in done or r in set(outcome.explained)],
        "explained": outcome.explained, "not_found": missing,
        "inputs_expired": outcome.inputs_expired, "failed": outcome.failed,
    }
    if other_model:
        answer["other_model"] = other_model
    return answer


def incident_json(incident: StoredIncident) -> dict[str, Any]:
    """The incident's own fields as served."""
    return {
        "id": incident.incident_id, "model": incident.model, "title": incident.title,
        "severity": incident.severity, "state": incident.state,
        "explain_all": incident.explain_all,
        "incident_mode": incident.is_open and incident.explain_all,
        "opened_at": iso_ms(incident.opened_ms), "opened_by": incident.opened_by,
        "closed_at": None if incident.closed_ms is None else iso_ms(incident.closed_ms),
        "closed_by": incident.closed_by,
        "links": links(incident.incident_id),
    }


def links(incident_id: str) -> dict[str, str]:
    """URLs an operator follows from an incident."""
    base = f"/v1/incidents/{incident_id}"
    return {"self": base, "traces": f"/v1/traces?incident={incident_id}",
            "attach": f"{base}/traces", "backfill": f"{base}/backfill",
            "export": f"{base}/export", "close": f"{base}/close"}


async def incident_view(runtime: Runtime, incident: StoredIncident, *, limit: int,
                        cursor: str | None) -> dict[str, Any]:
    """GET /v1/incidents/{id}: one page of linked traces; the summary on the first page."""
    page = await runtime.traces.search_traces(
        TraceQuery(incident=incident.incident_id, limit=limit, cursor=cursor))
    jobs = await runtime.incidents.store.jobs_of(incident.incident_id)
    view: dict[str, Any] = {
        **incident_json(incident),
        "traces": [trace_entry(orjson.loads(t.body)) for t in page.items],
        "next_cursor": page.next_cursor,
        "backfills": [job_view(j) for j in jobs if j.kind == "backfill"],
        "exports": [job_view(j) for j in jobs if j.kind == "export"],
    }
    if cursor is None:
        view["summary"] = await summarize(runtime, incident)
    return view
