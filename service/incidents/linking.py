"""Linking traces to incidents: the trace store's index and the incident's attachments."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

from service.incidents.holds import settle_linked
from service.runtime import Runtime
from storage.errors import StorageError

logger = logging.getLogger(__name__)


async def link_traces(runtime: Runtime, incident_id: str, request_ids: Sequence[str]) -> list[str]:
    """Link existing traces to the incident and hold them; return the request IDs linked."""
    if not request_ids:
        return []
    incidents = runtime.incidents
    linked = await incidents.traces.attach_incident(incident_id, request_ids)
    if linked:
        await incidents.store.attach_requests(incident_id, linked,
                                              attached_ms=time.time_ns() // 1_000_000)
        # Linking holds the traces; a closed incident (attached late, or closed while
        # these traces were explained for it) holds them only until its own release.
        await settle_linked(runtime, await incidents.store.get_incident(incident_id), linked)
    return linked


async def link_incident_mode_traces(runtime: Runtime,
                                    traces: Mapping[str, tuple[str, ...]]) -> None:
    """Link just-stored traces to the incidents they were explained for.

    The traces are stored and already searchable by incident; a store failure here only
    loses the hold past retention and the attachment count, so it is logged and counted
    rather than failing the ingest call that stored them.
    """
    by_incident: dict[str, list[str]] = {}
    for request_id, incident_ids in traces.items():
        for incident_id in incident_ids:
            by_incident.setdefault(incident_id, []).append(request_id)
    for incident_id, request_ids in sorted(by_incident.items()):
        try:
            await link_traces(runtime, incident_id, request_ids)
        except StorageError as exc:
            runtime.incidents.metrics.link_errors.inc(len(request_ids))
            logger.error("linking %d traces to incident %s failed: %s", len(request_ids),
                         incident_id, exc)
