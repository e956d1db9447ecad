"""Write archive batches with retries, and read archived traces back through the index."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import orjson

from storage.archive.index import RedisArchiveIndex
from storage.archive.layout import ArchiveObject, location, parse_location, read_line
from storage.errors import ArtifactNotFound, StoreUnavailable
from storage.protocols import ArtifactStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter, capped."""

    base_s: float
    cap_s: float

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (0-based)."""
        return random.uniform(0.0, min(self.cap_s, self.base_s * 2.0 ** min(attempt, 30)))


class ArchiveWriter:
    """Puts batch objects, then their index entries; each step is retried until it succeeds.

    A batch counts as archived only when `write` returns True: every PUT and the index
    update succeeded. The caller acknowledges its feed entries only then.
    """

    def __init__(self, store: ArtifactStore, index: RedisArchiveIndex, *, backoff: Backoff,
                 on_retry: Callable[[str, Exception], None] | None = None) -> None:
        self._store = store
        self._index = index
        self._backoff = backoff
        self._on_retry = on_retry

    async def write(self, objects: Sequence[ArchiveObject], *, stop: asyncio.Event,
                    index_until_ms: Mapping[str, int]) -> bool:
        """Write every object and index its traces; False if `stop` was set before the end.

        `index_until_ms` gives, per object key of traces, when its index entries expire
        (the end of the object's retention).
        """
        for obj in objects:
            if not await self._retry(obj.key, functools.partial(self._store.write, obj.key,
                                                                 obj.data), stop):
                return False
        locations = {request_id: (location(obj.key, line), index_until_ms[obj.key])
                     for obj in objects if obj.kind == "traces"
                     for line, request_id in enumerate(obj.request_ids)}
        return await self._retry(
            "archive index",
            lambda: self._index.put(locations, now_ms=int(time.time() * 1000)), stop)

    async def _retry(self, what: str, call: Callable[[], Awaitable[None]],
                     stop: asyncio.Event) -> bool:
        attempt = 0
        while not stop.is_set():
            try:
                await call()
                return True
            except StoreUnavailable as exc:
                if self._on_retry is not None:
                    self._on_retry(what, exc)
                delay = self._backoff.delay(attempt)
                logger.warning("archiving %s failed (attempt %d), retrying in %.1f s: %s",
                               what, attempt + 1, delay, exc)
                attempt += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
        return False


class ArchiveReader:
    """Finds an archived trace by request ID: index lookup, one GET, one line."""

    def __init__(self, store: ArtifactStore, index: RedisArchiveIndex) -> None:
        self._store = store
        self._index = index

    async def find_trace(self, request_id: str) -> bytes | None:
        """Return the archived trace body, or None when it was never archived."""
        where = await self._index.get(request_id)
        if where is None:
            return None
        key, line = parse_location(where)
        try:
            data = await self._store.read(key)
        except ArtifactNotFound:
            # Expected after a purge that ran before the entry's own expiry (a retention
            # shortened since the trace was archived): the entry goes, the read is a miss.
            forgotten = await self._index.forget(request_id, where)
            logger.warning("archive index pointed %s at purged object %s (entry %s)",
                           request_id, key, "removed" if forgotten else "already moved")
            return None
        body = read_line(data, line)
        if body is None or orjson.loads(body).get("request_id") != request_id:
            logger.error("archive index points %s at line %d of %s, which holds another "
                         "trace", request_id, line, key)
            return None
        return body
