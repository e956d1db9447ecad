"""Trace store and record log on Redis (the production store, shared by replicas).

Layout in `redis_keys`. Values are single packed strings (`packing`): one SET writes a
value and its TTL, and `SET NX GET` both claims a request ID and returns the value that
was already there, atomically, which makes `add_records` idempotent across replicas in
one round trip.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

import redis.asyncio

from storage.errors import StoreUnavailable
from storage.records import (
    RecordPage,
    RecordQuery,
    SealedInput,
    SealedPage,
    SealedUpdate,
    StoredRecord,
    StoredTrace,
    TracePage,
    TraceQuery,
)
from storage.redis_errors import redis_errors
from storage.traces.packing import (
    PackingError,
    pack_record,
    pack_trace,
    unpack_record,
    unpack_trace,
)
from storage.traces.query import encode_next_cursor, locate_start, matches_query
from storage.traces.redis_incidents import link_incident
from storage.traces.redis_index import (
    RESUME_AFTER_MEMBER,
    Candidate,
    IndexScanner,
    IndexWindow,
    reply_bytes,
)
from storage.traces.redis_keys import RedisKeys
from storage.traces.redis_listing import list_records, queue_record_index

logger = logging.getLogger(__name__)

BACKEND = "redis"
# Index members read per round trip when traces must also be filtered on their values
# (incident sets answer version/reason filters that way).
FILTERED_CHUNK = 100
MAX_CHUNK = 1000

# Logs one model's records and, only for new ones, their sealed inputs under their own
# TTL. KEYS are (record, sealed) pairs, ARGV (value, ttl, sealed, inputs ttl) per record.
# Returns a flat list (position, earlier record, its sealed inputs) for records logged
# before, so the common all-new batch answers with an empty list. Every key carries the
# model's hash tag, so one call is valid on a cluster.
ADD_RECORDS = """
local found = {}
for i = 1, #KEYS / 2 do
  local a = (i - 1) * 4
  local old = redis.call('SET', KEYS[2 * i - 1], ARGV[a + 1], 'NX', 'GET', 'EX', ARGV[a + 2])
  if old then
    found[#found + 1] = i
    found[#found + 1] = old
    found[#found + 1] = redis.call('GET', KEYS[2 * i]) or ''
  else
    redis.call('SET', KEYS[2 * i], ARGV[a + 3], 'EX', ARGV[a + 4])
  end
end
return found
"""

# Compare-and-set of sealed inputs, keeping the key's TTL (re-encryption).
REPLACE_SEALED = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
  return 1
end
return 0
"""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class RedisTraceStore:
    """Traces and records in Redis, with per-model hash tags and sorted-set indexes.

    Owns the client: `close()` closes it. The client must return bytes
    (`decode_responses=False`), since bodies are binary.
    """

    backend = BACKEND

    def __init__(self, client: redis.asyncio.Redis, *, key_prefix: str = "wl",
                 trace_ttl_s: int, record_ttl_s: int) -> None:
        if trace_ttl_s <= 0 or record_ttl_s <= 0:
            raise ValueError("retention must be positive")
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("the Redis client must return bytes (decode_responses=False)")
        self._client = client
        self._keys = RedisKeys(key_prefix)
        # Registering computes the script's SHA only; EVALSHA loads it on first NOSCRIPT.
        self._resume = client.register_script(RESUME_AFTER_MEMBER)
        self._add_records = client.register_script(ADD_RECORDS)
        self._replace_sealed = client.register_script(REPLACE_SEALED)
        self._trace_ttl_s = trace_ttl_s
        self._record_ttl_s = record_ttl_s
        # The lookup serves both traces and records, so it lives as long as the longer.
        self._lookup_ttl_s = max(trace_ttl_s, record_ttl_s)
        # Index members are trimmed by event time, which can trail the write time: a trace
        # explained late from a logged record stays searchable for its whole retention.
        self._index_horizon_ms = (trace_ttl_s + record_ttl_s) * 1000

    async def put_traces(self, traces: Sequence[StoredTrace]) -> None:
        """Write traces, their lookups and index entries in one pipeline."""
        if not traces:
            return
        members: defaultdict[str, dict[str, int]] = defaultdict(dict)
        index_ttl: defaultdict[str, int] = defaultdict(int)
        longest = max(self._trace_ttl_s, *(t.ttl_s or 0 for t in traces))
        horizon_ms = self._index_horizon_ms + (longest - self._trace_ttl_s) * 1000
        trim_below = f"({_now_ms() - horizon_ms}"
        pipe = self._client.pipeline(transaction=False)
        for trace in traces:
            ttl_s = trace.ttl_s or self._trace_ttl_s
            lookup_ttl_s = max(self._lookup_ttl_s, ttl_s)
            lookup = self._keys.lookup(trace.request_id)
            pipe.set(self._keys.trace(trace.model, trace.request_id), pack_trace(trace),
                     ex=ttl_s)
            # NX: the first model a request ID was seen with owns it; GT only extends.
            pipe.set(lookup, trace.model, nx=True, ex=lookup_ttl_s)
            pipe.expire(lookup, lookup_ttl_s, gt=True)
            for index in self._keys.indexes_of(trace):
                members[index][trace.request_id] = trace.event_ms
                index_ttl[index] = max(index_ttl[index], ttl_s)
        for index, scores in members.items():
            pipe.zadd(index, scores)
            pipe.zremrangebyscore(index, "-inf", trim_below)
            # Once nothing was added for a whole retention, every member has expired.
            # NX then GT: a shorter per-model retention never shortens a shared index.
            pipe.expire(index, index_ttl[index], nx=True)
            pipe.expire(index, index_ttl[index], gt=True)
        with redis_errors(BACKEND):
            await pipe.execute()

    async def get_trace(self, request_id: str) -> StoredTrace | None:
        """Return the trace, or None when unknown or expired."""
        with redis_errors(BACKEND):
            owner = reply_bytes(await self._client.get(self._keys.lookup(request_id)))
            if owner is None:
                return None
            key = self._keys.trace(owner.decode(), request_id)
            value = reply_bytes(await self._client.get(key))
        if value is None:
            return None
        try:
            trace = unpack_trace(value)
        except PackingError as exc:
            raise StoreUnavailable(BACKEND, f"unreadable value at {key}: {exc}") from exc
        return trace if trace.request_id == request_id else None

    async def search_traces(self, query: TraceQuery) -> TracePage:
        """Return matching traces newest first, from the one index that fits the filters."""
        position = locate_start(query)
        choice = self._keys.index_for(query)
        scanner = IndexScanner(self._client, choice.key, resume=self._resume,
                               window=IndexWindow(query.since_ms, query.until_ms))
        filtered = (query.version is not None and choice.version is None) or (
            query.reason is not None and choice.reason is None)
        wanted = query.limit + 1
        found: list[StoredTrace] = []
        stale: list[str] = []
        with redis_errors(BACKEND):
            while len(found) < wanted:
                count = wanted - len(found)
                count = min(max(count, FILTERED_CHUNK) if filtered else count, MAX_CHUNK)
                step = await scanner.chunk_after(position, count)
                traces = await self._load_traces(step.candidates, choice.model)
                for candidate, trace in zip(step.candidates, traces, strict=True):
                    if trace is None or not choice.holds(trace):
                        stale.append(candidate.request_id)
                    # A differing event time means a re-put moved it while we read.
                    elif trace.event_ms == candidate.event_ms and matches_query(trace, query):
                        found.append(trace)
                position = step.resume_after
                if position is None:
                    break
            if stale:
                # Expired or re-indexed members: drop them so later searches skip the read.
                await self._client.zrem(choice.key, *stale)
        found = found[:wanted]
        return TracePage(items=found[: query.limit],
                         next_cursor=encode_next_cursor(found, query.limit))

    async def _load_traces(self, chunk: list[Candidate],
                           model: str | None) -> list[StoredTrace | None]:
        if not chunk:
            return []
        keys: list[str | None]
        if model is not None:
            names = [self._keys.trace(model, c.request_id) for c in chunk]
            # One model's keys share a hash slot, so a single MGET is valid on a cluster.
            values = [reply_bytes(value) for value in await self._client.mget(names)]
            keys = list(names)
        else:
            pipe = self._client.pipeline(transaction=False)
            for candidate in chunk:
                pipe.get(self._keys.lookup(candidate.request_id))
            owners = await pipe.execute()
            keys = [None if owner is None else self._keys.trace(owner.decode(), c.request_id)
                    for owner, c in zip(owners, chunk, strict=True)]
            pipe = self._client.pipeline(transaction=False)
            for key in keys:
                if key is not None:
                    pipe.get(key)
            fetched = iter(await pipe.execute())
            values = [None if key is None else next(fetched) for key in keys]
        return [self._decode_trace(value, key) for value, key in zip(values, keys, strict=True)]

    def _decode_trace(self, value: bytes | None, key: str | None) -> StoredTrace | None:
        if value is None:
            return None
        try:
            return unpack_trace(value)
        except PackingError:
            logger.error("dropping unreadable trace value at %s from search", key)
            return None

    async def add_records(self, records: Sequence[StoredRecord]) -> list[StoredRecord | None]:
        """Insert records whose request ID is new; return None per insert, else the kept one.

        One round trip: per record a `SET NX GET` on the lookup (who owns the request ID),
        and per model one script call logging its records (`ADD_RECORDS`). A second round
        trip only serves request IDs seen before.
        """
        if not records:
            return []
        pipe = self._client.pipeline(transaction=False)
        by_model: defaultdict[str, list[int]] = defaultdict(list)
        for index, record in enumerate(records):
            # execute_command: the per-call keyword handling of pipe.set() cost more than
            # the write itself at batch sizes.
            pipe.execute_command("SET", self._keys.lookup(record.request_id), record.model,
                                 "NX", "GET", "EX",
                                 max(self._lookup_ttl_s, record.ttl_s or self._record_ttl_s),
                                 get=True)
            by_model[record.model].append(index)
        for model, indexes in by_model.items():
            keys: list[str] = []
            args: list[bytes | int] = []
            for index in indexes:
                record = records[index]
                ttl_s = record.ttl_s or self._record_ttl_s
                keys += (self._keys.record(model, record.request_id),
                         self._keys.sealed(model, record.request_id))
                args += (pack_record(record, with_sealed=False), ttl_s,
                         record.sealed_inputs, min(record.inputs_ttl_s or ttl_s, ttl_s))
            await self._add_records(keys=keys, args=args, client=pipe)
        # Listing entries go last: the replies above keep their positions.
        queue_record_index(pipe, self._keys, records,
                           trim_below_ms=_now_ms() - self._index_horizon_ms,
                           ttl_s=max(self._record_ttl_s, *(r.ttl_s or 0 for r in records)))
        with redis_errors(BACKEND):
            replies = await pipe.execute()
        earlier: dict[int, tuple[bytes, bytes]] = {}
        for indexes, found in zip(by_model.values(),
                                           replies[len(records): len(records) + len(by_model)],
                                           strict=True):
            for at in range(0, len(found), 3):
                earlier[indexes[int(found[at]) - 1]] = (found[at + 1], found[at + 2])
        answers: list[StoredRecord | None] = []
        seen_before: list[tuple[int, str]] = []
        for index, record in enumerate(records):
            owner, kept = replies[index], earlier.get(index)
            key = self._keys.record(record.model, record.request_id)
            answers.append(None if kept is None
                           else self._with_sealed(self._decode_record(kept[0], key),
                                                  kept[1] or None))
            if kept is None and owner is not None:
                seen_before.append((index, owner.decode()))
        if seen_before:
            await self._settle_seen_before(records, answers, seen_before)
        return answers

    async def _settle_seen_before(self, records: Sequence[StoredRecord],
                                  answers: list[StoredRecord | None],
                                  seen_before: list[tuple[int, str]]) -> None:
        # The lookup existed but this model had no live record: either its earlier record
        # expired (the new one stands; keep the lookup alive as long) or the request ID
        # belongs to another model, whose record is the earlier decision.
        pipe = self._client.pipeline(transaction=False)
        for index, owner in seen_before:
            record = records[index]
            if owner == record.model:
                pipe.expire(self._keys.lookup(record.request_id), self._lookup_ttl_s, gt=True)
                pipe.echo(b"")
            else:
                pipe.get(self._keys.record(owner, record.request_id))
                pipe.get(self._keys.sealed(owner, record.request_id))
        with redis_errors(BACKEND):
            flat = await pipe.execute()
        replies = list(zip(flat[::2], flat[1::2], strict=True))
        repair = self._client.pipeline(transaction=False)
        owners_records: dict[str, StoredRecord] = {}
        for (index, owner), (reply, sealed) in zip(seen_before, replies, strict=True):
            record = records[index]
            if owner == record.model:
                continue
            if reply is not None:
                key = self._keys.record(owner, record.request_id)
                answers[index] = owners_records[record.request_id] = self._with_sealed(
                    self._decode_record(reply, key), sealed)
                repair.delete(self._keys.record(record.model, record.request_id),
                              self._keys.sealed(record.model, record.request_id))
            else:
                # The owner's record is past retention: this record is the decision now.
                repair.set(self._keys.lookup(record.request_id), record.model,
                           ex=self._lookup_ttl_s)
            logger.warning("request ID %s logged for model %s was first seen with model %s",
                           record.request_id, record.model, owner)
        if len(repair):
            with redis_errors(BACKEND):
                await repair.execute()
        # A repeat later in the batch was answered with the stray record just deleted.
        for index, answer in enumerate(answers):
            if answer is not None and answer.request_id in owners_records:
                answers[index] = owners_records[answer.request_id]

    async def get_record(self, request_id: str) -> StoredRecord | None:
        """Return the logged record, or None when unknown or past retention."""
        with redis_errors(BACKEND):
            owner = reply_bytes(await self._client.get(self._keys.lookup(request_id)))
            if owner is None:
                return None
            key = self._keys.record(owner.decode(), request_id)
            # Same hash tag: one MGET is valid on a cluster.
            value, sealed = await self._client.mget(
                [key, self._keys.sealed(owner.decode(), request_id)])
        if value is None:
            return None
        record = self._with_sealed(self._decode_record(reply_bytes(value) or b"", key), sealed)
        return record if record.request_id == request_id else None

    def _with_sealed(self, record: StoredRecord, sealed: object) -> StoredRecord:
        # Records written before sealed inputs had their own key carry them inline.
        if sealed is None or sealed is False:
            return record
        return replace(record, sealed_inputs=reply_bytes(sealed) or b"")

    async def retain_traces(self, request_ids: Sequence[str], *, until_ms: int | None) -> int:
        """Keep traces until `until_ms` (None: until released); return how many exist.

        The seam for incidents (see the SQLite store). Holds the trace and its request ID
        lookup; search indexes keep their own retention.
        """
        if not request_ids:
            return 0
        with redis_errors(BACKEND):
            owners = await self._client.mget([self._keys.lookup(r) for r in request_ids])
            pipe = self._client.pipeline(transaction=False)
            held: list[str] = []
            for request_id, reply in zip(request_ids, owners, strict=True):
                owner = reply_bytes(reply)
                if owner is None:
                    continue
                trace_key = self._keys.trace(owner.decode(), request_id)
                lookup = self._keys.lookup(request_id)
                held.append(trace_key)
                pipe.exists(trace_key)
                if until_ms is None:
                    pipe.persist(trace_key)
                    pipe.persist(lookup)
                else:
                    pipe.pexpireat(trace_key, until_ms)
                    pipe.pexpireat(lookup, max(until_ms,
                                               _now_ms() + self._lookup_ttl_s * 1000))
            replies = await pipe.execute() if held else []
        return sum(1 for reply in replies[::3] if reply)

    async def scan_sealed_inputs(self, cursor: str | None, *, limit: int) -> SealedPage:
        """Return sealed inputs of one SCAN step (possibly none) and the next cursor."""
        position = 0 if cursor is None else int(cursor)
        with redis_errors(BACKEND):
            position, keys = await self._client.scan(
                position, match=self._keys.sealed_pattern(), count=limit)
            pipe = self._client.pipeline(transaction=False)
            for key in keys:
                pipe.get(key)
            values = await pipe.execute() if keys else []
        items = []
        for key, value in zip(keys, values, strict=True):
            parsed = self._keys.parse_sealed((reply_bytes(key) or b"").decode())
            if parsed is not None and value:
                items.append(SealedInput(request_id=parsed[1], model=parsed[0],
                                         sealed=reply_bytes(value) or b""))
        return SealedPage(items=items, next_cursor=None if position == 0 else str(position))

    async def replace_sealed_inputs(self, updates: Sequence[SealedUpdate]) -> int:
        """Swap sealed inputs whose stored bytes still equal `old`, keeping their TTL."""
        if not updates:
            return 0
        pipe = self._client.pipeline(transaction=False)
        for update in updates:
            await self._replace_sealed(keys=[self._keys.sealed(update.model, update.request_id)],
                                       args=[update.old, update.new], client=pipe)
        with redis_errors(BACKEND):
            replies = await pipe.execute()
        return sum(int(reply) for reply in replies)

    def _decode_record(self, value: bytes, key: str) -> StoredRecord:
        try:
            return unpack_record(value)
        except PackingError as exc:
            raise StoreUnavailable(BACKEND, f"unreadable value at {key}: {exc}") from exc

    async def list_records(self, query: RecordQuery) -> RecordPage:
        """Return one model's live records newest first (event time, then request ID)."""
        with redis_errors(BACKEND):
            return await list_records(self._client, self._keys, self._resume, query)

    async def attach_incident(self, incident_id: str, request_ids: Sequence[str]) -> list[str]:
        """Link existing traces to an incident and hold them; return the linked IDs."""
        with redis_errors(BACKEND):
            return await link_incident(self._client, self._keys, incident_id, request_ids)

    async def release_incident(self, incident_id: str, models: Sequence[str], *,
                               until_ms: int) -> None:
        """Let the incident's sorted sets expire with the last of its released traces."""
        keys = {key for model in models for key in self._keys.incident_indexes(model,
                                                                              incident_id)}
        pipe = self._client.pipeline(transaction=False)
        for key in sorted(keys):
            pipe.pexpireat(key, until_ms)
        with redis_errors(BACKEND):
            await pipe.execute()

    async def ping(self) -> None:
        """Round-trip a PING."""
        with redis_errors(BACKEND):
            await self._client.ping()

    async def close(self) -> None:
        """Close the client and its connections."""
        with redis_errors(BACKEND):
            await self._client.aclose()
