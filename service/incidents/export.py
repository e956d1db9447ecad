"""Export an incident: build the bundle, queue it in the durable outbox."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from service.errors import FieldError, RecordInvalid
from service.incidents.delivery import ExportTarget
from service.incidents.jobs import EXPORT, now_ms
from service.incidents.lifecycle import incident_json
from service.incidents.servicenow import ServiceNowTarget
from service.incidents.summary import summarize
from service.incidents.trace_view import trace_body
from service.incidents.webhook import WebhookTarget
from service.runtime import Runtime
from service.settings import Settings
from storage.incidents.records import JOB_QUEUED, StoredIncident, StoredJob
from storage.records import TraceQuery

BUNDLE_FORMAT = "whylens.incident-bundle/1"
_PAGE = 500


@dataclass(frozen=True, slots=True)
class Bundle:
    """The JSON bundle of an incident and its identity (sha256, file name)."""

    data: bytes
    digest: str
    file_name: str


def configured_targets(settings: Settings) -> dict[str, str | None]:
    """Each target and why it is off (None: configured)."""
    return {
        "servicenow": None if settings.servicenow.instance_url else
        "set WHYLENS_SERVICENOW__INSTANCE_URL (and credentials)",
        "webhook": None if settings.webhook.url and settings.webhook.secret else
        "set WHYLENS_WEBHOOK__URL and WHYLENS_WEBHOOK__SECRET",
    }


def export_targets(settings: Settings, client: httpx.AsyncClient) -> dict[str, ExportTarget]:
    """The configured targets, sharing one HTTP client."""
    off = configured_targets(settings)
    targets: dict[str, ExportTarget] = {}
    if off["servicenow"] is None:
        targets["servicenow"] = ServiceNowTarget(client, settings.servicenow)
    if off["webhook"] is None:
        targets["webhook"] = WebhookTarget(client, settings.webhook)
    return targets


async def build_bundle(runtime: Runtime, incident: StoredIncident) -> Bundle:
    """Incident, summary and the newest linked traces (masked, as served), canonical JSON."""
    limit = runtime.settings.incidents.bundle_traces
    traces: list[Any] = []
    truncated = False
    query = TraceQuery(incident=incident.incident_id, limit=max(1, min(_PAGE, limit)))
    while limit > 0:
        page = await runtime.traces.search_traces(query)
        traces += [orjson.loads(trace_body(t)) for t in page.items]
        if page.next_cursor is None or len(traces) >= limit:
            truncated = page.next_cursor is not None or len(traces) > limit
            break
        query = TraceQuery(incident=incident.incident_id, cursor=page.next_cursor,
                           limit=min(_PAGE, limit - len(traces)))
    document = {"format": BUNDLE_FORMAT, "incident": incident_json(incident),
                "summary": await summarize(runtime, incident), "traces": traces[:limit],
                "traces_truncated": truncated}
    data = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    digest = hashlib.sha256(data).hexdigest()
    return Bundle(data, digest, f"whylens-{incident.incident_id}-{digest[:16]}.json")


async def enqueue_export(runtime: Runtime, incident: StoredIncident,
                         target: str) -> tuple[StoredJob, bool]:
    """Queue the export; the same bundle to the same target is one job (returned again).

    Returns the job and whether it already existed.
    """
    off = configured_targets(runtime.settings).get(target)
    if off is not None:
        raise RecordInvalid([FieldError("target", f"{target} is not configured: {off}")])
    bundle = await build_bundle(runtime, incident)
    created = now_ms()
    detail = {"target": target, "digest": bundle.digest, "file_name": bundle.file_name,
              "bytes": len(bundle.data), "steps": {}, "last_error": None}
    job = StoredJob(job_id=f"{incident.incident_id}:export:{target}:{bundle.digest[:16]}",
                    incident_id=incident.incident_id, kind=EXPORT, state=JOB_QUEUED,
                    attempts=0, due_ms=created, created_ms=created, updated_ms=created,
                    detail=orjson.dumps(detail))
    stored = await runtime.incidents.store.enqueue_job(job, bundle.data)
    runtime.incidents.nudge()
    return stored, stored != job
