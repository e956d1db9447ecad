"""How long incident-linked traces are kept: held while an incident is open, then released.

A trace linked to incidents is held as long as any of them is open; once all are closed it
expires at the latest `closed_at + incident retention` among them. Prediction-log entries
and sealed inputs are never held: they keep their own retention.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from service.model_retention import RetentionLookup
from service.runtime import Runtime
from storage.incidents.records import StoredIncident
from storage.records import StoredTrace, TraceQuery

# Traces released per store round trip while closing an incident.
RELEASE_PAGE = 500

# A trace whose linked incidents are all unknown (deleted) is left as it is.
_UNHELD = -1


@dataclass(slots=True)
class HoldResolver:
    """Resolves the hold of traces from their incidents, reading each incident once."""

    runtime: Runtime
    incidents: dict[str, StoredIncident | None] = field(default_factory=dict)
    retention: RetentionLookup = field(init=False)

    def __post_init__(self) -> None:
        self.retention = RetentionLookup(self.runtime)

    def remember(self, incident: StoredIncident) -> None:
        """Use this copy of the incident (the caller has just saved it)."""
        self.incidents[incident.incident_id] = incident

    async def until_ms(self, incident_ids: Iterable[str]) -> int | None:
        """The end of the hold: None while any incident is open, else the latest release."""
        until = _UNHELD
        for incident_id in incident_ids:
            incident = await self._incident(incident_id)
            if incident is None:
                continue
            if incident.is_open or incident.closed_ms is None:
                return None
            released = incident.closed_ms + await self._retention_s(incident.model) * 1000
            until = max(until, released)
        return until

    async def _incident(self, incident_id: str) -> StoredIncident | None:
        if incident_id not in self.incidents:
            self.incidents[incident_id] = (
                await self.runtime.incidents.store.get_incident(incident_id))
        return self.incidents[incident_id]

    async def _retention_s(self, model: str) -> int:
        return (await self.retention.of(model)).incident_traces_s


async def settle_holds(resolver: HoldResolver, traces: Sequence[StoredTrace]) -> int:
    """Set each trace's expiry from all the incidents it is linked to; return how many."""
    by_until: defaultdict[int | None, list[str]] = defaultdict(list)
    for trace in traces:
        until = await resolver.until_ms(trace.incidents)
        if until != _UNHELD:
            by_until[until].append(trace.request_id)
    settled = 0
    for until, request_ids in by_until.items():
        settled += await resolver.runtime.incidents.traces.retain_traces(request_ids,
                                                                         until_ms=until)
    return settled


async def release_incident(runtime: Runtime, incident: StoredIncident) -> int:
    """Release the hold of a closed incident's traces, page by page; return how many.

    A trace also linked to another incident keeps the later of the two holds.
    """
    resolver = HoldResolver(runtime)
    resolver.remember(incident)
    own_until = await resolver.until_ms([incident.incident_id])
    models: set[str] = set()
    released = 0
    cursor: str | None = None
    while True:
        page = await runtime.traces.search_traces(
            TraceQuery(incident=incident.incident_id, limit=RELEASE_PAGE, cursor=cursor))
        models.update(t.model for t in page.items)
        released += await settle_holds(resolver, page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    if own_until is not None and own_until != _UNHELD:
        await runtime.incidents.traces.release_incident(
            incident.incident_id, sorted(models | {incident.model}), until_ms=own_until)
    return released


async def settle_linked(runtime: Runtime, incident: StoredIncident | None,
                        request_ids: Sequence[str]) -> None:
    """After linking traces to a closed incident, hold them no longer than its release."""
    if incident is None or incident.is_open or not request_ids:
        return
    resolver = HoldResolver(runtime)
    resolver.remember(incident)
    found = await asyncio.gather(*(runtime.traces.get_trace(r) for r in request_ids))
    traces = [t for t in found if t is not None]
    await settle_holds(resolver, traces)
    until = await resolver.until_ms([incident.incident_id])
    if until is not None and until != _UNHELD:
        await runtime.incidents.traces.release_incident(
            incident.incident_id, sorted({t.model for t in traces} | {incident.model}),
            until_ms=until)
