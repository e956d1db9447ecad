"""Request ID → archive location, in Redis, kept far longer than the traces themselves.

    {p}:ax:{request_id}   "traces/dt=.../model=.../<batch>.jsonl.gz#<line>"

Untagged, like the request ID lookup: a read by request ID alone must find it. One short
string per archived trace (about 150 bytes with Redis overhead; see docs/scaling.md);
a re-explained trace is archived again and its entry moves to the newest object.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import redis.asyncio
from redis.exceptions import RedisError

from storage.errors import StoreUnavailable

BACKEND = "redis archive index"


@contextlib.contextmanager
def _redis_errors() -> Iterator[None]:
    try:
        yield
    except (RedisError, OSError) as exc:
        raise StoreUnavailable(BACKEND, f"{type(exc).__name__}: {exc}") from exc


class RedisArchiveIndex:
    """Where each archived trace lives; entries expire after `ttl_s`."""

    def __init__(self, client: redis.asyncio.Redis, *, key_prefix: str, ttl_s: int) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self._client = client
        self._prefix = key_prefix
        self._ttl_s = ttl_s

    def key(self, request_id: str) -> str:
        """The index key of one request ID."""
        return f"{self._prefix}:ax:{request_id}"

    async def put(self, locations: Mapping[str, str]) -> None:
        """Set (or move) the location of each request ID, in one pipeline."""
        if not locations:
            return
        pipe = self._client.pipeline(transaction=False)
        for request_id, where in locations.items():
            pipe.set(self.key(request_id), where, ex=self._ttl_s)
        with _redis_errors():
            await pipe.execute()

    async def get(self, request_id: str) -> str | None:
        """Return the location of an archived trace, or None."""
        with _redis_errors():
            value = await self._client.get(self.key(request_id))
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)
