"""Incidents, attached request IDs and the outbox on Redis (shared by replicas).

Every key carries the hash tag `{incidents}`, so a Redis Cluster keeps them in one slot
and the scripts below may touch several keys. Incidents are few and small; they are kept
without TTL (like their held traces). Layout, `{p}` the deployment prefix:

    {p}:{incidents}:i:{id}            incident JSON
    {p}:{incidents}:all               sorted set: opened_ms → incident ID
    {p}:{incidents}:open              set of open incident IDs
    {p}:{incidents}:att:{id}          sorted set: attached_ms → request ID
    {p}:{incidents}:job:{job_id}      job JSON
    {p}:{incidents}:payload:{job_id}  job payload (deleted once the job is finished)
    {p}:{incidents}:due               sorted set: due_ms → unfinished job ID
    {p}:{incidents}:jobs:{id}         sorted set: created_ms → job ID of an incident

IDs are percent-encoded in key names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import redis.asyncio

from storage.cursor import decode_cursor, encode_cursor
from storage.incidents.records import (
    AttachedPage,
    AttachedRequest,
    StoredIncident,
    StoredJob,
)
from storage.redis_errors import redis_errors
from storage.traces.redis_index import RESUME_AFTER_MEMBER, IndexScanner, IndexWindow, reply_bytes

BACKEND = "redis"

CREATE_INCIDENT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
  if ARGV[4] == '1' then redis.call('SADD', KEYS[3], ARGV[3]) end
  return 1
end
return 0
"""

ENQUEUE_JOB = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  return redis.call('GET', KEYS[1])
end
if ARGV[2] == '1' then redis.call('SET', KEYS[2], ARGV[3]) end
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[6])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[6])
return false
"""

# Claiming reschedules each due job to the end of its lease in the same step, so two
# replicas never claim one job at once, and a job whose worker died is claimed again.
CLAIM_JOBS = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[2], id) end
return ids
"""


def _part(name: str) -> str:
    return quote(name, safe="")


def _texts(replies: Any) -> list[str]:
    return [(reply_bytes(r) or b"").decode() for r in replies or ()]


def _values(replies: Any) -> list[bytes]:
    return [v for v in (reply_bytes(r) for r in replies or ()) if v is not None]


class RedisIncidentStore:
    """`IncidentStore` and `JobQueue` on Redis. Owns the client: `close()` closes it."""

    backend = BACKEND

    def __init__(self, client: redis.asyncio.Redis, *, key_prefix: str = "wl") -> None:
        if not key_prefix or any(ch in key_prefix for ch in "{}"):
            raise ValueError("key prefix must be non-empty and free of '{' and '}'")
        self._client = client
        self._base = f"{key_prefix}:{{incidents}}"
        self._create = client.register_script(CREATE_INCIDENT)
        self._enqueue = client.register_script(ENQUEUE_JOB)
        self._claim = client.register_script(CLAIM_JOBS)
        self._resume = client.register_script(RESUME_AFTER_MEMBER)

    def _key(self, kind: str, name: str | None = None) -> str:
        return f"{self._base}:{kind}" if name is None else f"{self._base}:{kind}:{_part(name)}"

    async def create_incident(self, incident: StoredIncident) -> bool:
        """Insert the incident; False when its ID is taken."""
        with redis_errors(BACKEND):
            created = await self._create(
                keys=[self._key("i", incident.incident_id), self._key("all"),
                      self._key("open")],
                args=[incident.to_json(), incident.opened_ms, incident.incident_id,
                      "1" if incident.is_open else "0"])
        return bool(created)

    async def get_incident(self, incident_id: str) -> StoredIncident | None:
        """Return the incident, or None."""
        with redis_errors(BACKEND):
            value = reply_bytes(await self._client.get(self._key("i", incident_id)))
        return None if value is None else StoredIncident.from_json(value)

    async def list_incidents(self, *, open_only: bool = False,
                             limit: int = 100) -> list[StoredIncident]:
        """Return incidents newest first (only open ones with `open_only`)."""
        with redis_errors(BACKEND):
            if open_only:
                ids = _texts(await self._client.smembers(self._key("open")))
            else:
                ids = _texts(await self._client.zrevrange(self._key("all"), 0, limit - 1))
            values = await self._client.mget([self._key("i", i) for i in ids]) if ids else []
        incidents = [StoredIncident.from_json(v) for v in _values(values)]
        incidents.sort(key=lambda i: (i.opened_ms, i.incident_id), reverse=True)
        return incidents[:limit]

    async def save_incident(self, incident: StoredIncident) -> None:
        """Replace the stored incident and its open/closed membership atomically."""
        pipe = self._client.pipeline(transaction=True)
        pipe.set(self._key("i", incident.incident_id), incident.to_json(), xx=True)
        if incident.is_open:
            pipe.sadd(self._key("open"), incident.incident_id)
        else:
            pipe.srem(self._key("open"), incident.incident_id)
        with redis_errors(BACKEND):
            await pipe.execute()

    async def attach_requests(self, incident_id: str, request_ids: Sequence[str], *,
                              attached_ms: int) -> int:
        """Attach request IDs (the first attachment time stands); return how many were new."""
        if not request_ids:
            return 0
        with redis_errors(BACKEND):
            added = await self._client.zadd(self._key("att", incident_id),
                                            dict.fromkeys(request_ids, attached_ms), nx=True)
        return int(added or 0)

    async def attached_requests(self, incident_id: str, *, limit: int,
                                cursor: str | None) -> AttachedPage:
        """Return a page of attached request IDs, newest attachment first."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        start = None if cursor is None else decode_cursor(cursor)
        key = self._key("att", incident_id)
        scanner = IndexScanner(self._client, key, resume=self._resume,
                               window=IndexWindow(None, None))
        with redis_errors(BACKEND):
            step = await scanner.chunk_after(start, limit + 1)
            total = int(await self._client.zcard(key))
        items = [AttachedRequest(c.request_id, c.event_ms) for c in step.candidates[:limit]]
        next_cursor = None
        if len(step.candidates) > limit:
            next_cursor = encode_cursor(items[-1].attached_ms, items[-1].request_id)
        return AttachedPage(items=items, next_cursor=next_cursor, total=total)

    async def enqueue_job(self, job: StoredJob, payload: bytes | None) -> StoredJob:
        """Insert the job unless its ID exists; return the stored job either way."""
        with redis_errors(BACKEND):
            existing = await self._enqueue(
                keys=[self._key("job", job.job_id), self._key("payload", job.job_id),
                      self._key("due"), self._key("jobs", job.incident_id)],
                args=[job.to_json(), "0" if payload is None else "1", payload or b"",
                      job.due_ms, job.created_ms, job.job_id])
        value = reply_bytes(existing) if existing else None
        return job if value is None else StoredJob.from_json(value)

    async def claim_jobs(self, *, now_ms: int, lease_ms: int, limit: int) -> list[StoredJob]:
        """Return due unfinished jobs, pushing their due time to the end of the lease."""
        with redis_errors(BACKEND):
            ids = _texts(await self._claim(keys=[self._key("due")],
                                           args=[now_ms, now_ms + lease_ms, limit]))
            if not ids:
                return []
            values = await self._client.mget([self._key("job", i) for i in ids])
        return [StoredJob.from_json(v) for v in _values(values)]

    async def save_job(self, job: StoredJob) -> None:
        """Replace the job's state; a finished job leaves the due set and drops its payload."""
        pipe = self._client.pipeline(transaction=True)
        pipe.set(self._key("job", job.job_id), job.to_json())
        if job.terminal:
            pipe.zrem(self._key("due"), job.job_id)
            pipe.delete(self._key("payload", job.job_id))
        else:
            pipe.zadd(self._key("due"), {job.job_id: job.due_ms})
        with redis_errors(BACKEND):
            await pipe.execute()

    async def jobs_of(self, incident_id: str) -> list[StoredJob]:
        """Return the incident's jobs, oldest first."""
        with redis_errors(BACKEND):
            ids = _texts(await self._client.zrange(self._key("jobs", incident_id), 0, -1))
            if not ids:
                return []
            values = await self._client.mget([self._key("job", i) for i in ids])
        return [StoredJob.from_json(v) for v in _values(values)]

    async def job_payload(self, job_id: str) -> bytes | None:
        """Return the job's payload (None once finished, or when it had none)."""
        with redis_errors(BACKEND):
            return reply_bytes(await self._client.get(self._key("payload", job_id)))

    async def ping(self) -> None:
        """Round-trip a PING."""
        with redis_errors(BACKEND):
            await self._client.ping()

    async def close(self) -> None:
        """Close the client."""
        with redis_errors(BACKEND):
            await self._client.aclose()
