"""Listing one model's logged records by event time in the Redis store.

Each new record joins `{p}:{model}:rx:all` (and `rx:d` when the budget deferred it),
scored by event time, in the same pipeline that logs it. Members are added with NX, so
a duplicate never moves the original; members whose record expired, moved or no longer
matches are dropped when a listing meets them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import redis.asyncio
from redis.commands.core import AsyncScript

from storage.cursor import decode_cursor
from storage.records import RecordPage, RecordQuery, StoredRecord
from storage.traces.packing import PackingError, unpack_record
from storage.traces.redis_index import Candidate, IndexScanner, IndexWindow, reply_bytes
from storage.traces.redis_keys import RedisKeys
from storage.traces.sqlite_listing import page_of

# Members read per round trip of a listing.
CHUNK = 200


def queue_record_index(pipe: Any, keys: RedisKeys, records: Sequence[StoredRecord], *,
                       trim_below_ms: int, ttl_s: int) -> None:
    """Add the records' index entries to a pipeline (after the commands that log them)."""
    members: defaultdict[str, dict[str, int]] = defaultdict(dict)
    for record in records:
        members[keys.record_index(record.model)][record.request_id] = record.event_ms
        if record.deferred:
            members[keys.deferred_index(record.model)][record.request_id] = record.event_ms
    for index, scores in members.items():
        pipe.zadd(index, scores, nx=True)
        pipe.zremrangebyscore(index, "-inf", f"({trim_below_ms}")
        # NX then GT: a shorter retention never shortens the index.
        pipe.expire(index, ttl_s, nx=True)
        pipe.expire(index, ttl_s, gt=True)


async def list_records(client: redis.asyncio.Redis, keys: RedisKeys, resume: AsyncScript,
                       query: RecordQuery) -> RecordPage:
    """Return one page of the model's live records, newest first."""
    if query.limit < 1:
        raise ValueError("limit must be at least 1")
    position = None if query.cursor is None else decode_cursor(query.cursor)
    key = (keys.deferred_index(query.model) if query.deferred_only
           else keys.record_index(query.model))
    scanner = IndexScanner(client, key, resume=resume,
                           window=IndexWindow(query.since_ms, query.until_ms))
    wanted = query.limit + 1
    found: list[StoredRecord] = []
    stale: list[str] = []
    moved: dict[str, int] = {}
    while len(found) < wanted:
        step = await scanner.chunk_after(position, max(wanted - len(found), CHUNK))
        records = await _load(client, keys, query.model, step.candidates)
        for candidate, record in zip(step.candidates, records, strict=True):
            if record is None or (query.deferred_only and not record.deferred):
                stale.append(candidate.request_id)
            elif record.event_ms != candidate.event_ms:
                # Logged again after the first record expired: re-score, list it later.
                moved[record.request_id] = record.event_ms
            else:
                found.append(record)
        position = step.resume_after
        if position is None:
            break
    if stale:
        await client.zrem(key, *stale)
    if moved:
        await client.zadd(key, moved, xx=True)
    return page_of(found[:wanted], query.limit)


async def _load(client: redis.asyncio.Redis, keys: RedisKeys, model: str,
                candidates: list[Candidate]) -> list[StoredRecord | None]:
    if not candidates:
        return []
    names: list[str] = []
    for candidate in candidates:
        names += [keys.record(model, candidate.request_id),
                  keys.sealed(model, candidate.request_id)]
    # One model's keys share a hash slot, so a single MGET is valid on a cluster.
    values = await client.mget(names)
    records: list[StoredRecord | None] = []
    for i, candidate in enumerate(candidates):
        value, sealed = reply_bytes(values[2 * i]), reply_bytes(values[2 * i + 1])
        record = None
        if value is not None:
            try:
                record = unpack_record(value)
            except PackingError:
                record = None
        if record is not None and record.request_id != candidate.request_id:
            record = None
        if record is not None and sealed is not None:
            record = replace(record, sealed_inputs=sealed)
        records.append(record)
    return records
