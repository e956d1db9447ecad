"""Drift windows in Redis: one hash per bucket, shared by every replica.

    {p}:{model}:dw:{version}:{segment}:{resolution_s}:{bucket_ms}   hash of counters
    {p}:{model}:ds:{dimension}                                       set of admitted segments
    {p}:{model}:dl:{request_id}                                      label claim

Every key carries the model's hash tag, so a Redis Cluster keeps a model's windows in one
slot; names are percent-encoded so none can end the tag early. One script call per
bucket applies a batch's increments atomically: HINCRBY for counts, HINCRBYFLOAT for
sums, and a compare-and-set inside the script for last-seen maxima (no read-modify-write
race between replicas), then PEXPIREAT at the bucket's end plus the retention.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from urllib.parse import quote

import orjson
import redis.asyncio
from redis.exceptions import NoScriptError

from storage.drift.records import (
    BucketRef,
    WindowIncrement,
    WindowKey,
    bucket_expiry_ms,
    is_maximum,
)
from storage.errors import StoreUnavailable
from storage.redis_errors import redis_errors

BACKEND = "redis"

# ARGV[2] is one JSON array [counts, sums, maxima] of {name: decimal string}: one
# argument instead of two per counter, since packing thousands of arguments per bucket
# in redis-py dominated ingest. Values travel as strings so no float loses digits in Lua.
ADD_COUNTERS = """
local key = KEYS[1]
local parts = cjson.decode(ARGV[2])
for name, value in pairs(parts[1]) do
  redis.call('HINCRBY', key, name, value)
end
for name, value in pairs(parts[2]) do
  redis.call('HINCRBYFLOAT', key, name, value)
end
for name, value in pairs(parts[3]) do
  local current = tonumber(redis.call('HGET', key, name))
  if current == nil or tonumber(value) > current then
    redis.call('HSET', key, name, value)
  end
end
redis.call('PEXPIREAT', key, ARGV[1])
return 1
"""

ADMIT_SEGMENTS = """
local cap = tonumber(ARGV[1])
local admitted = {}
for i = 3, #ARGV do
  if redis.call('SISMEMBER', KEYS[1], ARGV[i]) == 1 then
    admitted[#admitted + 1] = ARGV[i]
  elseif redis.call('SCARD', KEYS[1]) < cap then
    redis.call('SADD', KEYS[1], ARGV[i])
    admitted[#admitted + 1] = ARGV[i]
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return admitted
"""


def _part(name: str) -> str:
    return quote(name, safe="")


class RedisDriftWindowStore:
    """Drift counters in Redis hashes, aggregated by every replica with atomic increments.

    Owns the client: `close()` closes it.
    """

    backend = BACKEND

    def __init__(self, client: redis.asyncio.Redis, *, key_prefix: str = "wl",
                 retention_s: int) -> None:
        if retention_s <= 0:
            raise ValueError("retention must be positive")
        if not key_prefix or any(ch in key_prefix for ch in "{}"):
            raise ValueError("key prefix must be non-empty and free of '{' and '}'")
        self._client = client
        self._prefix = key_prefix
        self._retention_s = retention_s
        self._add_sha = hashlib.sha1(ADD_COUNTERS.encode()).hexdigest()
        self._admit = client.register_script(ADMIT_SEGMENTS)

    def _tagged(self, model: str) -> str:
        return f"{self._prefix}:{{{_part(model)}}}"

    def bucket_key(self, key: WindowKey, bucket: BucketRef) -> str:
        """Name of the hash of one bucket."""
        return (f"{self._tagged(key.model)}:dw:{_part(key.version)}:{_part(key.segment)}:"
                f"{bucket.resolution_s}:{bucket.start_ms}")

    async def add_window_counts(self, increments: Sequence[WindowIncrement]) -> None:
        """Apply every increment: one script call per bucket, in one pipeline."""
        calls: list[tuple[str, list[int | bytes]]] = []
        for inc in increments:
            packed = orjson.dumps([
                {name: str(value) for name, value in inc.counts.items()},
                {name: repr(float(value)) for name, value in inc.sums.items()},
                {name: str(value) for name, value in inc.maxima.items()}])
            calls.append((self.bucket_key(inc.key, inc.bucket),
                           [bucket_expiry_ms(inc.bucket, self._retention_s), packed]))
        with redis_errors(BACKEND):
            await self._evaluate(calls)

    async def _evaluate(self, calls: list[tuple[str, list[int | bytes]]]) -> None:
        # EVALSHA straight away (no SCRIPT EXISTS round trip per batch); only the calls
        # that met NOSCRIPT (a restarted or flushed server) run again after loading.
        for attempt in range(2):
            pipe = self._client.pipeline(transaction=False)
            for key, args in calls:
                pipe.evalsha(self._add_sha, 1, key, *args)
            replies = await pipe.execute(raise_on_error=False)
            failures = [r for r in replies if isinstance(r, Exception)]
            unloaded = [c for c, r in zip(calls, replies, strict=True)
                        if isinstance(r, NoScriptError)]
            if len(unloaded) < len(failures):
                raise next(r for r in failures if not isinstance(r, NoScriptError))
            if not unloaded:
                return
            if attempt == 0:
                await self._client.script_load(ADD_COUNTERS)
            calls = unloaded
        raise StoreUnavailable(BACKEND, "the counter script could not be loaded")

    async def read_window_counts(self, key: WindowKey,
                                 buckets: Sequence[BucketRef]) -> dict[str, float]:
        """Return the counters of the buckets merged (summed; maxima kept as maxima)."""
        if not buckets:
            return {}
        pipe = self._client.pipeline(transaction=False)
        for bucket in buckets:
            pipe.hgetall(self.bucket_key(key, bucket))
        with redis_errors(BACKEND):
            replies = await pipe.execute()
        merged: dict[str, float] = {}
        for reply in replies:
            for raw_name, raw_value in reply.items():
                name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
                value = float(raw_value)
                if is_maximum(name):
                    merged[name] = max(merged.get(name, value), value)
                else:
                    merged[name] = merged.get(name, 0.0) + value
        return merged

    async def admit_segments(self, model: str, dimension: str, values: Sequence[str], *,
                             cap: int) -> frozenset[str]:
        """Return the values admitted as segments: known ones, then new ones up to `cap`.

        The check and the add run in one script, so replicas never admit more than `cap`.
        """
        if not values:
            return frozenset()
        key = f"{self._tagged(model)}:ds:{_part(dimension)}"
        with redis_errors(BACKEND):
            reply = await self._admit(keys=[key], args=[
                cap, self._retention_s * 1000, *dict.fromkeys(values)])
        return frozenset(v.decode() if isinstance(v, bytes) else str(v) for v in reply)

    async def claim_labels(self, model: str, request_ids: Sequence[str]) -> list[bool]:
        """Claim each request ID's label once (SET NX); True where this call claimed it."""
        if not request_ids:
            return []
        pipe = self._client.pipeline(transaction=False)
        for request_id in request_ids:
            pipe.set(f"{self._tagged(model)}:dl:{request_id}", b"1", nx=True,
                     ex=self._retention_s)
        with redis_errors(BACKEND):
            replies = await pipe.execute()
        claimed = []
        seen: set[str] = set()
        for request_id, reply in zip(request_ids, replies, strict=True):
            # A request ID repeated within one call is claimed by its first occurrence.
            claimed.append(bool(reply) and request_id not in seen)
            seen.add(request_id)
        return claimed

    async def ping(self) -> None:
        """Raise `StoreUnavailable` when Redis does not answer."""
        with redis_errors(BACKEND):
            await self._client.ping()

    async def close(self) -> None:
        """Close the client's connections."""
        await self._client.aclose()
