"""Walk one search index (a sorted set) newest first, resuming exactly after a position.

Members are request IDs scored by event time. Redis orders equal scores by member bytes,
so ZREVRANGE* yields exactly the search order: event time, then request ID, descending.
Resuming after (event_ms, request_id) must skip the rest of its tie group precisely,
even when thousands of traces share one millisecond (a backfill with a fixed timestamp).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio
from redis.commands.core import AsyncScript

from storage.cursor import CursorPosition
from storage.errors import StoreUnavailable

# When the position's member is still indexed at its score, its rank finds the next
# member in O(log N) however large the tie group; atomic, and a single key, so it is
# also valid on a Redis Cluster.
RESUME_AFTER_MEMBER = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[2])
if (not score) or tonumber(score) ~= tonumber(ARGV[1]) then
  return false
end
local rank = redis.call('ZREVRANK', KEYS[1], ARGV[2])
return redis.call('ZREVRANGE', KEYS[1], rank + 1, rank + tonumber(ARGV[3]), 'WITHSCORES')
"""

# Tie-group members fetched per call when the position's member is gone.
TIE_CHUNK = 500


def reply_bytes(reply: object) -> bytes | None:
    """Return a bulk-string reply as bytes (the store's client never decodes replies)."""
    if reply is None or isinstance(reply, bytes):
        return reply
    raise StoreUnavailable("redis", f"unexpected reply type {type(reply).__name__}")


def _scored(reply: object) -> list[tuple[bytes, Any]]:
    pairs: list[tuple[bytes, Any]] = []
    for item in reply if isinstance(reply, list) else ():
        member, score = item
        pairs.append((reply_bytes(member) or b"", score))
    return pairs


@dataclass(frozen=True, slots=True)
class Candidate:
    """One index member: a request ID and the event time it was indexed with."""

    request_id: str
    event_ms: int


@dataclass(frozen=True, slots=True)
class ScanStep:
    """One chunk of an index walk and where the next one starts (None: index ended)."""

    candidates: list[Candidate]
    resume_after: CursorPosition | None


@dataclass(frozen=True, slots=True)
class IndexWindow:
    """The score bounds of a search: inclusive since, exclusive until."""

    since_ms: int | None
    until_ms: int | None

    @property
    def upper(self) -> str:
        """ZREVRANGEBYSCORE max argument."""
        return "+inf" if self.until_ms is None else f"({self.until_ms}"

    @property
    def lower(self) -> str:
        """ZREVRANGEBYSCORE min argument."""
        return "-inf" if self.since_ms is None else str(self.since_ms)

    def contains(self, event_ms: int) -> bool:
        """Tell whether an event time lies inside the bounds."""
        return (self.since_ms is None or event_ms >= self.since_ms) and (
            self.until_ms is None or event_ms < self.until_ms)


class IndexScanner:
    """Reads chunks of one sorted set in search order."""

    def __init__(self, client: redis.asyncio.Redis, key: str, *, resume: AsyncScript,
                 window: IndexWindow) -> None:
        """`resume` is RESUME_AFTER_MEMBER registered on the same client."""
        self._client = client
        self._key = key
        self._resume = resume
        self._window = window

    async def chunk_after(self, position: CursorPosition | None, count: int) -> ScanStep:
        """Return up to `count` members after the position (None: from the newest)."""
        if (position is not None and self._window.until_ms is not None
                and position.event_ms >= self._window.until_ms):
            # Every member inside the window already lies after this position.
            position = None
        if position is None:
            pairs = _scored(await self._client.zrevrangebyscore(
                self._key, self._window.upper, self._window.lower, start=0, num=count,
                withscores=True))
        else:
            pairs = await self._after(position, count)
        candidates: list[Candidate] = []
        ended = len(pairs) < count
        last: Candidate | None = None
        for member, score in pairs:
            last = Candidate(member.decode(), int(float(score)))
            if self._window.since_ms is not None and last.event_ms < self._window.since_ms:
                ended = True
                break
            if self._window.contains(last.event_ms) and (
                    position is None or position.precedes(last.event_ms, last.request_id)):
                candidates.append(last)
        # Resume from the last member read, kept or not, so every step makes progress.
        resume = None if ended or last is None else CursorPosition(last.event_ms,
                                                                   last.request_id)
        return ScanStep(candidates, resume)

    async def _after(self, position: CursorPosition,
                     count: int) -> list[tuple[bytes, Any]]:
        flat = await self._resume(keys=[self._key],
                                  args=[position.event_ms, position.request_id, count])
        if flat is not None:
            return [(reply_bytes(m) or b"", s) for m, s in zip(flat[::2], flat[1::2],
                                                                strict=True)]
        return await self._after_missing_member(position, count)

    async def _after_missing_member(self, position: CursorPosition,
                                    count: int) -> list[tuple[bytes, Any]]:
        # The member expired, was trimmed or moved: walk its tie group by member name.
        score = position.event_ms
        found: list[tuple[bytes, Any]] = []
        offset = 0
        while len(found) < count:
            ties = _scored(await self._client.zrevrangebyscore(
                self._key, score, score, start=offset, num=TIE_CHUNK, withscores=True))
            found += [(m, s) for m, s in ties if m.decode() < position.request_id]
            if len(ties) < TIE_CHUNK:
                break
            offset += TIE_CHUNK
        if len(found) < count:
            found += _scored(await self._client.zrevrangebyscore(
                self._key, f"({score}", self._window.lower, start=0, num=count - len(found),
                withscores=True))
        return found[:count]
