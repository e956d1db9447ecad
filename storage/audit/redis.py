"""Audit log on Redis: one Stream per deployment, appended with XADD and capped (MAXLEN ~)."""

from __future__ import annotations

import json
import re

import redis.asyncio

from storage.audit.records import AuditEntry, AuditEvent, AuditPage, AuditQuery
from storage.errors import CursorInvalid
from storage.redis_errors import redis_errors

BACKEND = "redis"
_STREAM_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")


class RedisAuditLog:
    """Appends to `{prefix}:audit`; entry ids are the stream's ids (time-ordered).

    Owns the client: `close()` closes it.
    """

    backend = BACKEND

    def __init__(self, client: redis.asyncio.Redis, *, key_prefix: str,
                 max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self._client = client
        self._key = f"{key_prefix}:audit"
        self._max_entries = max_entries

    async def append(self, event: AuditEvent) -> str:
        """XADD the event; approximate trimming keeps the stream near its cap cheaply."""
        fields: dict[str, str | int] = {
            "at_ms": event.at_ms, "actor": event.actor, "action": event.action,
            "target": event.target, "request_id": event.request_id or "",
            "status": event.status, "detail": json.dumps(event.detail, sort_keys=True),
        }
        with redis_errors(BACKEND):
            entry_id = await self._client.xadd(self._key, fields,  # type: ignore[arg-type]
                                               maxlen=self._max_entries, approximate=True)
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    async def page(self, query: AuditQuery) -> AuditPage:
        """XREVRANGE newest first, resuming strictly before the cursor's entry."""
        upper = "+" if query.until_ms is None else f"({query.until_ms}-0"
        if query.cursor is not None:
            if not _STREAM_ID.fullmatch(query.cursor):
                raise CursorInvalid(query.cursor)
            upper = f"({query.cursor}"
        lower = "-" if query.since_ms is None else f"{query.since_ms}-0"
        with redis_errors(BACKEND):
            rows = await self._client.xrevrange(self._key, max=upper, min=lower,
                                                count=query.limit + 1)
        found = list(rows or ())
        items = [_entry(entry_id, fields) for entry_id, fields in found[: query.limit]]
        next_cursor = items[-1].entry_id if len(found) > query.limit else None
        return AuditPage(items=items, next_cursor=next_cursor)

    async def close(self) -> None:
        """Close the client."""
        with redis_errors(BACKEND):
            await self._client.aclose()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entry(entry_id: object, fields: object) -> AuditEntry:
    pairs = fields.items() if isinstance(fields, dict) else ()
    text = {_text(key): _text(value) for key, value in pairs}
    event = AuditEvent(
        at_ms=int(text.get("at_ms", "0")), actor=text.get("actor", ""),
        action=text.get("action", ""), target=text.get("target", ""),
        request_id=text.get("request_id") or None, status=int(text.get("status", "0")),
        detail=json.loads(text.get("detail", "{}")),
    )
    return AuditEntry(_text(entry_id), event)
