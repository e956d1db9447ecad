"""Linking existing traces to an incident in the Redis store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import redis.asyncio

from storage.traces.packing import PackingError, pack_trace, unpack_trace
from storage.traces.redis_index import reply_bytes
from storage.traces.redis_keys import RedisKeys


async def link_incident(client: redis.asyncio.Redis, keys: RedisKeys, incident_id: str,
                        request_ids: Sequence[str]) -> list[str]:
    """Link existing traces to the incident and hold them (no TTL); return the linked IDs.

    The trace value gains the incident (what a read returns), the incident's sorted sets
    gain the trace (what `?incident=` searches), and the value, its request ID lookup and
    the incident's sets lose their TTL. A put of the same trace racing this call may win;
    the service links again after every put of a linked trace.
    """
    ids = list(dict.fromkeys(request_ids))
    if not ids:
        return []
    owners = [reply_bytes(o) for o in await client.mget([keys.lookup(r) for r in ids])]
    found = [(rid, owner.decode()) for rid, owner in zip(ids, owners, strict=True)
             if owner is not None]
    if not found:
        return []
    pipe = client.pipeline(transaction=False)
    for rid, model in found:
        pipe.get(keys.trace(model, rid))
    values = await pipe.execute()
    write = client.pipeline(transaction=False)
    linked: list[str] = []
    for (rid, model), value in zip(found, values, strict=True):
        raw = reply_bytes(value)
        if raw is None:
            continue
        try:
            trace = unpack_trace(raw)
        except PackingError:
            continue
        if trace.request_id != rid:
            continue
        if incident_id not in trace.incidents:
            trace = replace(trace, incidents=(*trace.incidents, incident_id))
        # A plain SET drops the TTL: the trace is held past retention.
        write.set(keys.trace(model, rid), pack_trace(trace))
        write.persist(keys.lookup(rid))
        for index in keys.incident_indexes(model, incident_id):
            write.zadd(index, {rid: trace.event_ms})
            write.persist(index)
        linked.append(rid)
    if linked:
        await write.execute()
    return linked
