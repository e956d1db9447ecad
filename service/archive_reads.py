"""Reads that fall back to the archive once a trace is past the store's retention."""

from __future__ import annotations

from datetime import datetime

import orjson

from service.runtime import Runtime
from storage.records import StoredTrace


async def find_archived_trace(runtime: Runtime, request_id: str) -> StoredTrace | None:
    """Return the archived trace of a request ID, or None (no archive, or never archived).

    Raises:
        StoreUnavailable: the archive index or the object store did not answer.
    """
    scale_out = runtime.scale_out
    if scale_out is None or scale_out.archive is None:
        return None
    body = await scale_out.archive.find_trace(request_id)
    if body is None:
        scale_out.metrics.archive_reads.labels("miss").inc()
        return None
    scale_out.metrics.archive_reads.labels("hit").inc()
    document = orjson.loads(body)
    model = document.get("model", {})
    timestamp = document.get("timestamp")
    event_ms = (int(datetime.fromisoformat(timestamp).timestamp() * 1000)
                if isinstance(timestamp, str) else 0)
    return StoredTrace(
        request_id=request_id, model=str(model.get("name", "")),
        version=str(model.get("version", "")),
        reason=(document.get("sampling") or {}).get("reason"), event_ms=event_ms, body=body,
        incidents=tuple(str(i) for i in document.get("incidents") or ()),
    )
