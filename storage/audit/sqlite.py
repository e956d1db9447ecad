"""Audit log in the embedded SQLite file: an append-only table guarded by triggers."""

from __future__ import annotations

import functools
import json
import sqlite3
from typing import Any

from storage.audit.records import AuditEntry, AuditEvent, AuditPage, AuditQuery
from storage.errors import CursorInvalid
from storage.sqlite_worker import BACKEND, SqliteWorker

# Trimming beyond the cap runs once per this many appends, not on every one.
TRIM_EVERY = 1000

# Rows can be neither changed nor deleted, except the oldest ones beyond the configured
# cap (the same bound Redis applies with XADD MAXLEN): the log is append-only.
SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS audit_log (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms      INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    request_id TEXT,
    status     INTEGER NOT NULL,
    detail     TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS audit_config (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    max_entries INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
WHEN OLD.seq > (SELECT MAX(seq) FROM audit_log)
               - (SELECT max_entries FROM audit_config WHERE id = 1)
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
COMMIT;
"""



class SqliteAuditLog:
    """Appends and pages audit entries; one worker thread owns the connection."""

    backend = BACKEND

    def __init__(self, path: str, *, max_entries: int, trim_every: int = TRIM_EVERY) -> None:
        if max_entries < 1 or trim_every < 1:
            raise ValueError("max_entries and trim_every must be positive")
        self._max_entries = max_entries
        self._trim_every = trim_every
        # The audit trail keeps SQLite's default FULL synchronous mode: no pragmas.
        self._worker = SqliteWorker(path, schema=SCHEMA, thread_name="whylens-audit",
                                    pragmas=(), setup=self._configure)
        self._run = self._worker.run

    async def append(self, event: AuditEvent) -> str:
        """Store the event; return its entry id."""
        return await self._run(functools.partial(self._append, event))

    async def page(self, query: AuditQuery) -> AuditPage:
        """Return entries newest first, resuming after `query.cursor`."""
        before = None
        if query.cursor is not None:
            if not query.cursor.isdigit() or len(query.cursor) > 19:
                raise CursorInvalid(query.cursor)
            before = int(query.cursor)
        rows = await self._run(functools.partial(self._select, query, before))
        items = [_entry(row) for row in rows[: query.limit]]
        next_cursor = items[-1].entry_id if len(rows) > query.limit else None
        return AuditPage(items=items, next_cursor=next_cursor)

    async def close(self) -> None:
        """Close the connection and stop the worker thread."""
        await self._worker.close()

    def _configure(self, conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO audit_config (id, max_entries) VALUES (1, ?)"
                     " ON CONFLICT (id) DO UPDATE SET max_entries = excluded.max_entries",
                     (self._max_entries,))

    def _append(self, event: AuditEvent, conn: sqlite3.Connection) -> str:
        cursor = conn.execute(
            "INSERT INTO audit_log (at_ms, actor, action, target, request_id, status, detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (event.at_ms, event.actor, event.action, event.target, event.request_id,
             event.status, json.dumps(event.detail, sort_keys=True)))
        seq = int(cursor.lastrowid or 0)
        if seq % self._trim_every == 0:
            conn.execute("DELETE FROM audit_log WHERE seq <= ?", (seq - self._max_entries,))
        return str(seq)

    def _select(self, query: AuditQuery, before: int | None,
                conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
        clauses = ["1 = 1"]
        params: list[Any] = []
        if before is not None:
            clauses.append("seq < ?")
            params.append(before)
        if query.since_ms is not None:
            clauses.append("at_ms >= ?")
            params.append(query.since_ms)
        if query.until_ms is not None:
            clauses.append("at_ms < ?")
            params.append(query.until_ms)
        params.append(query.limit + 1)
        return conn.execute(
            "SELECT seq, at_ms, actor, action, target, request_id, status, detail"
            f" FROM audit_log WHERE {' AND '.join(clauses)} ORDER BY seq DESC LIMIT ?",
            params).fetchall()


def _entry(row: tuple[Any, ...]) -> AuditEntry:
    seq, at_ms, actor, action, target, request_id, status, detail = row
    return AuditEntry(str(seq), AuditEvent(at_ms=at_ms, actor=actor, action=action,
                                           target=target, request_id=request_id,
                                           status=status, detail=json.loads(detail)))
