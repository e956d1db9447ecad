"""Request ID → archive location, in Redis, kept as long as the archived object itself.

    {p}:ax:{request_id}   "traces/dt=.../model=.../<batch>.jsonl.gz#<line>"

Untagged, like the request ID lookup: a read by request ID alone must find it. One short
string per archived trace (about 150 bytes with Redis overhead; see docs/scaling.md);
a re-explained trace is archived again and its entry moves to the newest object.
"""

from __future__ import annotations

from collections.abc import Mapping

import redis.asyncio

from storage.redis_errors import redis_errors

BACKEND = "redis archive index"


# Deletes the entry only while it still points where the caller found it dangling: a
# re-archived trace whose entry moved to a newer object keeps it.
_FORGET = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisArchiveIndex:
    """Where each archived trace lives, until its partition's retention ends.

    Each entry expires exactly when the object it points into becomes due for the purge
    (`until_ms`, from the partition's day and the model's archive retention), optionally
    capped by `max_ttl_s`; so the index never outlives the objects.
    """

    def __init__(self, client: redis.asyncio.Redis, *, key_prefix: str,
                 max_ttl_s: int | None = None) -> None:
        if max_ttl_s is not None and max_ttl_s <= 0:
            raise ValueError("max_ttl_s must be positive")
        self._client = client
        self._prefix = key_prefix
        self._max_ttl_s = max_ttl_s

    def key(self, request_id: str) -> str:
        """The index key of one request ID."""
        return f"{self._prefix}:ax:{request_id}"

    async def put(self, locations: Mapping[str, tuple[str, int]], *, now_ms: int) -> None:
        """Set (or move) each request ID's (location, until_ms), in one pipeline.

        An entry whose end is already past is removed instead: its object is due for the
        purge, so pointing at it would only serve data past retention.
        """
        if not locations:
            return
        cap = None if self._max_ttl_s is None else now_ms + self._max_ttl_s * 1000
        pipe = self._client.pipeline(transaction=False)
        for request_id, (where, until_ms) in locations.items():
            until = until_ms if cap is None else min(until_ms, cap)
            if until <= now_ms:
                pipe.delete(self.key(request_id))
            else:
                pipe.set(self.key(request_id), where, pxat=until)
        with redis_errors(BACKEND):
            await pipe.execute()

    async def get(self, request_id: str) -> str | None:
        """Return the location of an archived trace, or None."""
        with redis_errors(BACKEND):
            value = await self._client.get(self.key(request_id))
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    async def forget(self, request_id: str, where: str) -> bool:
        """Delete the entry if it still points at `where`; True when it was deleted."""
        with redis_errors(BACKEND):
            deleted = await self._client.eval(_FORGET, 1, self.key(request_id), where)
        return bool(deleted)
