"""A bounded Redis Stream consumed by a consumer group, with reclaim and a dead-letter stream.

Keys of one stream share the hash tag `{q:<name>}` (a colon cannot appear in a
percent-encoded model tag, so they never collide with trace keys), which keeps the
stream, its dead-letter stream and its error hash in one Cluster slot: the dead-letter
move is one MULTI.

    {p}:{q:<name>}:stream    the entries (XADD ... MAXLEN ~ max_length)
    {p}:{q:<name>}:dead      dead-lettered entries with the recorded error
    {p}:{q:<name>}:errors    last error per pending entry ID (hash)

Delivery is at least once: an entry is pending from XREADGROUP until XACK; one whose
consumer died is taken over with XAUTOCLAIM once idle long enough. Every (re)delivery
raises its delivery count, which bounds how often a poison entry is retried.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio
from redis.exceptions import ResponseError

from storage.redis_errors import redis_errors

BACKEND = "redis queue"
# Recorded errors outlive any sane retry schedule, then go with the key.
ERRORS_TTL_S = 7 * 86400
MAX_ERROR_CHARS = 1000
TRANSIENT_PREFIX = "transient: "


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def entry_ms(entry_id: str) -> int:
    """Return the milliseconds part of a stream entry ID (when it was added)."""
    return int(entry_id.split("-", 1)[0])


@dataclass(frozen=True, slots=True)
class StreamKeys:
    """The keys of one named stream."""

    stream: str
    dead: str
    errors: str

    @classmethod
    def named(cls, prefix: str, name: str) -> StreamKeys:
        """Keys of stream `name` under the deployment's key prefix."""
        if not prefix or any(ch in prefix + name for ch in "{}"):
            raise ValueError("prefix and stream name must be non-empty and brace-free")
        tag = f"{prefix}:{{q:{name}}}"
        return cls(f"{tag}:stream", f"{tag}:dead", f"{tag}:errors")


@dataclass(frozen=True, slots=True)
class Delivery:
    """One entry handed to a consumer, and how many times it has been delivered."""

    entry_id: str
    fields: dict[str, str]
    deliveries: int


@dataclass(frozen=True, slots=True)
class Reclaimed:
    """Entries taken over from idle consumers, with the last error recorded for each."""

    deliveries: list[Delivery] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    vanished: list[str] = field(default_factory=list)
    """Pending IDs whose entry was trimmed from the stream before it was acknowledged."""


@dataclass(frozen=True, slots=True)
class QueueStats:
    """What an operator watches: size, backlog and age of the oldest unfinished entry."""

    length: int
    pending: int
    lag: int | None
    """Entries not yet delivered to the group (None when Redis cannot tell)."""
    oldest_undelivered_age_s: float
    oldest_pending_age_s: float
    dead_letters: int
    consumers: int

    @property
    def backlog(self) -> int:
        """Entries added but not yet acknowledged (lag unknown: the whole stream)."""
        return self.pending + (self.lag if self.lag is not None else self.length)


class RedisStream:
    """Producer and consumer side of one stream and its consumer group."""

    def __init__(self, client: redis.asyncio.Redis, keys: StreamKeys, *, group: str,
                 max_length: int, dead_max_length: int) -> None:
        if max_length <= 0 or dead_max_length <= 0:
            raise ValueError("stream lengths must be positive")
        self._client = client
        self.keys = keys
        self.group = group
        self._max_length = max_length
        self._dead_max_length = dead_max_length
        self._claim_cursor = "0-0"

    async def ensure_group(self) -> None:
        """Create the stream and its group (from the first entry) unless they exist."""
        with redis_errors(BACKEND):
            try:
                await self._client.xgroup_create(self.keys.stream, self.group, id="0",
                                                 mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def add(self, entries: Sequence[Mapping[str, str]]) -> list[str]:
        """Append entries (one pipeline); the stream is trimmed to about `max_length`."""
        if not entries:
            return []
        pipe = self._client.pipeline(transaction=False)
        for entry in entries:
            pipe.xadd(self.keys.stream, _encodable(entry), maxlen=self._max_length,
                      approximate=True)
        with redis_errors(BACKEND):
            ids = await pipe.execute()
        return [_text(entry_id) for entry_id in ids]

    async def read(self, consumer: str, *, count: int, block_ms: int) -> list[Delivery]:
        """Return up to `count` never-delivered entries, waiting up to `block_ms` for one."""
        with redis_errors(BACKEND):
            try:
                reply = await self._read(consumer, count, block_ms)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # The stream was deleted (or never made): recreate it, then read again.
                await self.ensure_group()
                reply = await self._read(consumer, count, block_ms)
        deliveries = []
        for _stream, items in reply or ():
            for entry_id, values in items:
                deliveries.append(Delivery(_text(entry_id), _fields(values), 1))
        return deliveries

    async def _read(self, consumer: str, count: int, block_ms: int) -> Any:
        return await self._client.xreadgroup(self.group, consumer, {self.keys.stream: ">"},
                                             count=count, block=block_ms)

    async def reclaim(self, consumer: str, *, min_idle_ms: int, count: int) -> Reclaimed:
        """Take over up to `count` entries idle for `min_idle_ms` (XAUTOCLAIM, resumable).

        Successive calls walk the pending list from where the previous one stopped, so a
        long list is covered in bounded steps.
        """
        with redis_errors(BACKEND):
            reply = await self._client.xautoclaim(self.keys.stream, self.group, consumer,
                                                  min_idle_ms, start_id=self._claim_cursor,
                                                  count=count)
            self._claim_cursor = _text(reply[0])
            claimed = [(_text(i), _fields(v)) for i, v in reply[1] if v is not None]
            vanished = [_text(i) for i in (reply[2] if len(reply) > 2 else ())]
            vanished += [_text(i) for i, v in reply[1] if v is None]
            if not claimed:
                return Reclaimed(vanished=vanished)
            pipe = self._client.pipeline(transaction=False)
            for entry_id, _ in claimed:
                pipe.xpending_range(self.keys.stream, self.group, entry_id, entry_id, 1)
            pipe.hmget(self.keys.errors, [entry_id for entry_id, _ in claimed])
            *pending, errors = await pipe.execute()
        deliveries = []
        recorded: dict[str, str] = {}
        for (entry_id, values), info, error in zip(claimed, pending, errors, strict=True):
            times = int(info[0]["times_delivered"]) if info else 1
            deliveries.append(Delivery(entry_id, values, times))
            if error is not None:
                recorded[entry_id] = _text(error)
        return Reclaimed(deliveries, recorded, vanished)

    async def ack(self, entry_ids: Sequence[str]) -> None:
        """Acknowledge finished entries and drop their recorded errors."""
        if not entry_ids:
            return
        pipe = self._client.pipeline(transaction=False)
        pipe.xack(self.keys.stream, self.group, *entry_ids)
        pipe.hdel(self.keys.errors, *entry_ids)
        with redis_errors(BACKEND):
            await pipe.execute()

    async def record_error(self, entry_id: str, error: str, *, transient: bool) -> None:
        """Remember why the last attempt at an entry failed (shown when it is dead-lettered)."""
        text = (TRANSIENT_PREFIX if transient else "") + error[:MAX_ERROR_CHARS]
        pipe = self._client.pipeline(transaction=False)
        pipe.hset(self.keys.errors, entry_id, text)
        pipe.expire(self.keys.errors, ERRORS_TTL_S)
        with redis_errors(BACKEND):
            await pipe.execute()

    async def dead_letter(self, delivery: Delivery, *, error: str, consumer: str) -> None:
        """Move an entry to the dead-letter stream with its error, atomically with the ack."""
        record = {**delivery.fields, "error": error[:MAX_ERROR_CHARS],
                  "deliveries": str(delivery.deliveries), "entry_id": delivery.entry_id,
                  "consumer": consumer, "dead_at_ms": str(time.time_ns() // 1_000_000)}
        pipe = self._client.pipeline(transaction=True)
        pipe.xadd(self.keys.dead, _encodable(record), maxlen=self._dead_max_length,
                  approximate=True)
        pipe.xack(self.keys.stream, self.group, delivery.entry_id)
        pipe.hdel(self.keys.errors, delivery.entry_id)
        with redis_errors(BACKEND):
            await pipe.execute()

    async def dead_letters(self, count: int) -> list[Delivery]:
        """Return the oldest dead-lettered entries (fields include `error`)."""
        with redis_errors(BACKEND):
            items = await self._client.xrange(self.keys.dead, count=count)
        return [Delivery(_text(i), _fields(v), int(_fields(v).get("deliveries", "0")))
                for i, v in items or ()]

    async def requeue_dead(self, entry_ids: Sequence[str]) -> int:
        """Put dead-lettered entries back on the stream (fresh delivery count); return how many."""
        moved = 0
        for entry_id in entry_ids:
            with redis_errors(BACKEND):
                items = await self._client.xrange(self.keys.dead, entry_id, entry_id)
                if not items:
                    continue
                original = {k: v for k, v in _fields(items[0][1]).items()
                            if k not in ("error", "deliveries", "entry_id", "consumer",
                                         "dead_at_ms")}
                pipe = self._client.pipeline(transaction=True)
                pipe.xadd(self.keys.stream, _encodable(original), maxlen=self._max_length,
                          approximate=True)
                pipe.xdel(self.keys.dead, entry_id)
                await pipe.execute()
            moved += 1
        return moved

    async def forget_consumer(self, consumer: str) -> bool:
        """Remove a consumer from the group if it holds nothing; tell whether it was removed."""
        with redis_errors(BACKEND):
            try:
                consumers = await self._client.xinfo_consumers(self.keys.stream, self.group)
            except ResponseError:
                return False
            for info in consumers:
                if _text(info.get("name")) == consumer and int(info.get("pending", 0)) == 0:
                    await self._client.xgroup_delconsumer(self.keys.stream, self.group,
                                                          consumer)
                    return True
        return False

    async def prune_consumers(self, *, idle_ms: int) -> int:
        """Delete consumers idle longer than `idle_ms` that hold no entries (dead workers)."""
        removed = 0
        with redis_errors(BACKEND):
            try:
                consumers = await self._client.xinfo_consumers(self.keys.stream, self.group)
            except ResponseError:
                return 0
            for info in consumers:
                if int(info.get("pending", 0)) == 0 and int(info.get("idle", 0)) > idle_ms:
                    await self._client.xgroup_delconsumer(self.keys.stream, self.group,
                                                          _text(info.get("name")))
                    removed += 1
        return removed

    async def stats(self) -> QueueStats:
        """Length, pending, lag and the ages of the oldest undelivered and pending entries."""
        now_ms = time.time_ns() // 1_000_000
        with redis_errors(BACKEND):
            length, dead = await self._lengths()
            group = await self._group_info()
            if group is None:
                return QueueStats(length, 0, length, _age(await self._first_after("-"), now_ms),
                                  0.0, dead, 0)
            last = _text(group.get("last-delivered-id", b"0-0"))
            oldest_undelivered = await self._first_after(f"({last}")
            summary = await self._client.xpending(self.keys.stream, self.group)
        lag = group.get("lag")
        oldest_pending = summary.get("min") if summary.get("pending") else None
        return QueueStats(
            length=length, pending=int(group.get("pending", 0)),
            lag=None if lag is None else int(lag),
            oldest_undelivered_age_s=_age(oldest_undelivered, now_ms),
            oldest_pending_age_s=_age(None if oldest_pending is None
                                      else _text(oldest_pending), now_ms),
            dead_letters=dead, consumers=int(group.get("consumers", 0)),
        )

    async def _lengths(self) -> tuple[int, int]:
        pipe = self._client.pipeline(transaction=False)
        pipe.xlen(self.keys.stream)
        pipe.xlen(self.keys.dead)
        length, dead = await pipe.execute()
        return int(length), int(dead)

    async def _group_info(self) -> dict[str, Any] | None:
        try:
            groups = await self._client.xinfo_groups(self.keys.stream)
        except ResponseError:
            return None
        for info in groups:
            if _text(info.get("name")) == self.group:
                return dict(info)
        return None

    async def _first_after(self, start: str) -> str | None:
        items = await self._client.xrange(self.keys.stream, start, "+", count=1)
        return _text(items[0][0]) if items else None


def _age(entry_id: str | None, now_ms: int) -> float:
    if entry_id is None:
        return 0.0
    return max(0.0, (now_ms - entry_ms(entry_id)) / 1000)


def _fields(values: Mapping[Any, Any] | None) -> dict[str, str]:
    return {_text(key): _text(value) for key, value in (values or {}).items()}


def _encodable(fields: Mapping[str, str]) -> dict[Any, Any]:
    return dict(fields)
