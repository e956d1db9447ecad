"""Where the pages read incidents from: the incident service (service/incidents)."""

from __future__ import annotations

import logging
from typing import Any

from service.incidents.lifecycle import incident_json, incident_view
from service.runtime import Runtime
from storage.errors import StorageError

logger = logging.getLogger(__name__)

TRACES_PER_PAGE = 50
OPEN_LISTED = 100


async def open_incidents(runtime: Runtime, *, model: str | None) -> list[dict[str, Any]] | None:
    """Open incidents (all models, or one); None when the incident store cannot answer."""
    try:
        found = await runtime.incidents.store.list_incidents(open_only=True, limit=OPEN_LISTED)
    except StorageError as exc:
        # The fleet and model pages must still load when only the incident store is down.
        logger.error("open incidents unavailable: %s", exc)
        return None
    return [incident_json(i) for i in found if model is None or i.model == model]


async def incident_summary(runtime: Runtime, incident_id: str, *,
                           cursor: str | None) -> dict[str, Any] | None:
    """The incident as `GET /v1/incidents/{id}` serves it (summary on the first page only);
    None when unknown."""
    incident = await runtime.incidents.store.get_incident(incident_id)
    if incident is None:
        return None
    return await incident_view(runtime, incident, limit=TRACES_PER_PAGE, cursor=cursor)
