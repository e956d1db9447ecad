"""Embedded trace store and record log in one SQLite file (the default, single-node mode)."""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections.abc import Sequence
from typing import Any

from storage.cursor import decode_cursor
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
from storage.sqlite_worker import BACKEND, DEFAULT_PRAGMAS, SqliteWorker, transaction
from storage.sqlite_worker import now_ms as _now_ms
from storage.traces import sqlite_schema as schema
from storage.traces.query import encode_next_cursor, locate_start
from storage.traces.sqlite_incidents import link_incident
from storage.traces.sqlite_listing import LISTING_INDEXES, select_records

logger = logging.getLogger(__name__)

# SQLite caps bound parameters per statement; chunk IN lists well below the cap.
IN_CHUNK = 500
# Rows deleted per purge transaction, so a big purge never holds the writer for long.
PURGE_CHUNK = 2000
# Free pages returned to the file system per purge (incremental vacuum), ~4 MB of pages.
VACUUM_PAGES = 1000


class SqliteTraceStore:
    """Traces and records in SQLite, used from one dedicated worker thread.

    Every call runs on a single-thread executor that owns the only connection, so writes
    are serialized without locks in Python and the event loop never blocks on disk.
    Rows carry an expiry time; reads ignore expired rows and `purge_expired` deletes them.
    """

    backend = BACKEND

    def __init__(self, path: str, *, trace_ttl_s: int, record_ttl_s: int) -> None:
        if trace_ttl_s <= 0 or record_ttl_s <= 0:
            raise ValueError("retention must be positive")
        self._path = path
        self._trace_ttl_ms = trace_ttl_s * 1000
        self._record_ttl_ms = record_ttl_s * 1000
        self._worker = SqliteWorker(
            path, schema=schema.SCHEMA + LISTING_INDEXES, thread_name="whylens-sqlite",
            # Must precede the first table: it only takes effect on an empty file.
            before_wal=("PRAGMA auto_vacuum=INCREMENTAL",),
            pragmas=(*DEFAULT_PRAGMAS,
                     # Deleted rows are overwritten with zeros, not left in free pages.
                     "PRAGMA secure_delete=ON",
                     # Deleting a trace must delete its incident links (ON DELETE CASCADE).
                     "PRAGMA foreign_keys=ON"),
            migrate=schema.migrate, setup=self._opened)
        self._run = self._worker.run

    async def put_traces(self, traces: Sequence[StoredTrace]) -> None:
        """Insert or replace traces (and their incident links) in one transaction."""
        if traces:
            await self._run(functools.partial(self._put_traces, list(traces)))

    async def get_trace(self, request_id: str) -> StoredTrace | None:
        """Return the live trace, or None when unknown or expired."""
        return await self._run(functools.partial(self._get_trace, request_id))

    async def search_traces(self, query: TraceQuery) -> TracePage:
        """Return matching live traces newest first (event time, then request ID)."""
        start = locate_start(query)
        params: dict[str, Any] = {
            "model": query.model, "version": query.version, "reason": query.reason,
            "incident": query.incident, "since_ms": query.since_ms, "until_ms": query.until_ms,
            "fetch": query.limit + 1,
            "after_ms": None if start is None else start.event_ms,
            "after_id": None if start is None else start.request_id,
        }
        sql = schema.search_sql(query, resume=start is not None)
        items = await self._run(functools.partial(self._select_traces, sql, params))
        return TracePage(items=items[: query.limit],
                         next_cursor=encode_next_cursor(items, query.limit))

    async def add_records(self, records: Sequence[StoredRecord]) -> list[StoredRecord | None]:
        """Insert new records; return None per inserted one, else the record already kept."""
        if not records:
            return []
        return await self._run(functools.partial(self._add_records, list(records)))

    async def get_record(self, request_id: str) -> StoredRecord | None:
        """Return the live record, or None when unknown or past retention."""
        return await self._run(functools.partial(self._get_record, request_id))

    async def list_records(self, query: RecordQuery) -> RecordPage:
        """Return one model's live records newest first (event time, then request ID)."""
        if query.limit < 1:
            raise ValueError("limit must be at least 1")
        start = None if query.cursor is None else decode_cursor(query.cursor)
        return await self._run(functools.partial(select_records, query, start, _now_ms()))

    async def attach_incident(self, incident_id: str, request_ids: Sequence[str]) -> list[str]:
        """Link live traces to an incident and hold them past retention; return linked IDs."""
        if not request_ids:
            return []
        return await self._run(functools.partial(
            link_incident, incident_id, list(dict.fromkeys(request_ids)), _now_ms()))

    async def release_incident(self, incident_id: str, models: Sequence[str], *,
                               until_ms: int) -> None:
        """Nothing to do: an incident's index rows go with their traces (ON DELETE CASCADE)."""

    async def purge_expired(self) -> int:
        """Delete expired traces, records and sealed inputs; return how many rows changed.

        Deleted bytes are overwritten (secure_delete), free pages are handed back by an
        incremental vacuum and the WAL is truncated, so expired data leaves the files.
        """
        now_ms = _now_ms()
        total = 0
        for table in ("traces", "records", "inputs"):
            while True:
                deleted = await self._run(functools.partial(self._purge_chunk, table, now_ms))
                total += deleted
                if deleted < PURGE_CHUNK:
                    break
        await self._run(self._reclaim)
        return total

    async def retain_traces(self, request_ids: Sequence[str], *, until_ms: int | None) -> int:
        """Keep traces until `until_ms` (None: until released); return how many exist.

        The seam for incidents: hold linked traces while the incident is open, then set
        the incident's close time plus its retention. A later `put_traces` of the same
        trace resets its retention, so call this after every put of a linked trace.
        """
        expires_ms = schema.HELD_MS if until_ms is None else until_ms
        return await self._run(functools.partial(self._retain, list(request_ids), expires_ms))

    async def scan_sealed_inputs(self, cursor: str | None, *, limit: int) -> SealedPage:
        """Return a page of live sealed inputs in storage order, for re-encryption."""
        after = 0
        if cursor is not None:
            if not cursor.isdigit():
                raise ValueError("not a sealed-input cursor of the SQLite store")
            after = int(cursor)
        rows = await self._run(functools.partial(self._scan_sealed, after, limit))
        items = [SealedInput(request_id=r[1], model=r[2], sealed=bytes(r[3])) for r in rows]
        next_cursor = str(rows[-1][0]) if len(rows) == limit else None
        return SealedPage(items=items, next_cursor=next_cursor)

    async def replace_sealed_inputs(self, updates: Sequence[SealedUpdate]) -> int:
        """Swap sealed inputs whose stored bytes still equal `old`; return how many."""
        if not updates:
            return 0
        return await self._run(functools.partial(self._replace_sealed, list(updates)))

    async def ping(self) -> None:
        """Open the database if needed and run a trivial query."""
        await self._run(lambda conn: conn.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        """Close the connection and stop the worker thread; later calls fail."""
        await self._worker.close()

    def _opened(self, _conn: sqlite3.Connection) -> None:
        logger.info("opened SQLite trace store at %s", self._path)

    def _put_traces(self, traces: list[StoredTrace], conn: sqlite3.Connection) -> None:
        now_ms = _now_ms()
        # A request ID repeated in one batch: the last trace wins, as with separate puts.
        latest = {trace.request_id: trace for trace in traces}
        rows = [schema.trace_row(t, now_ms + (self._trace_ttl_ms if t.ttl_s is None
                                              else t.ttl_s * 1000))
                for t in latest.values()]
        with transaction(conn):
            conn.executemany(schema.UPSERT_TRACE, rows)
            conn.executemany("DELETE FROM trace_incidents WHERE request_id = ?",
                             [(rid,) for rid in latest])
            conn.executemany(
                "INSERT OR IGNORE INTO trace_incidents (incident_id, request_id) VALUES (?, ?)",
                [(inc, t.request_id) for t in latest.values() for inc in t.incidents])

    def _get_trace(self, request_id: str, conn: sqlite3.Connection) -> StoredTrace | None:
        row = conn.execute(
            f"SELECT {schema.TRACE_COLUMNS} FROM traces AS t"
            " WHERE t.request_id = ? AND t.expires_ms > ?",
            (request_id, _now_ms())).fetchone()
        return None if row is None else schema.trace_from_row(row)

    def _select_traces(self, sql: str, params: dict[str, Any],
                       conn: sqlite3.Connection) -> list[StoredTrace]:
        rows = conn.execute(sql, {**params, "now_ms": _now_ms()}).fetchall()
        return [schema.trace_from_row(row) for row in rows]

    def _add_records(self, records: list[StoredRecord],
                     conn: sqlite3.Connection) -> list[StoredRecord | None]:
        now_ms = _now_ms()
        with transaction(conn):
            kept = self._live_records(conn, {r.request_id for r in records}, now_ms)
            answers: list[StoredRecord | None] = []
            fresh: list[dict[str, Any]] = []
            for record in records:
                earlier = kept.get(record.request_id)
                answers.append(earlier)
                if earlier is None:
                    # A repeat later in this batch is a duplicate of this one.
                    kept[record.request_id] = record
                    fresh.append(self._record_params(record, now_ms))
            conn.executemany(schema.INSERT_RECORD, fresh)
        return answers

    def _live_records(self, conn: sqlite3.Connection, request_ids: set[str],
                      now_ms: int) -> dict[str, StoredRecord]:
        ids = sorted(request_ids)
        found: dict[str, StoredRecord] = {}
        for offset in range(0, len(ids), IN_CHUNK):
            chunk = ids[offset: offset + IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(
                f"SELECT {schema.RECORD_COLUMNS} FROM records"
                f" WHERE request_id IN ({marks}) AND expires_ms > ?", (*chunk, now_ms))
            for row in rows:
                record = schema.record_from_row(row, now_ms)
                found[record.request_id] = record
        return found

    def _get_record(self, request_id: str, conn: sqlite3.Connection) -> StoredRecord | None:
        now_ms = _now_ms()
        row = conn.execute(
            f"SELECT {schema.RECORD_COLUMNS} FROM records"
            " WHERE request_id = ? AND expires_ms > ?", (request_id, now_ms)).fetchone()
        return None if row is None else schema.record_from_row(row, now_ms)

    def _record_params(self, record: StoredRecord, now_ms: int) -> dict[str, Any]:
        ttl_ms = self._record_ttl_ms if record.ttl_s is None else record.ttl_s * 1000
        inputs_expires_ms = None
        if record.inputs_ttl_s is not None and record.inputs_ttl_s * 1000 < ttl_ms:
            inputs_expires_ms = now_ms + record.inputs_ttl_s * 1000
        return schema.record_params(record, expires_ms=now_ms + ttl_ms, now_ms=now_ms,
                                    inputs_expires_ms=inputs_expires_ms)

    def _purge_chunk(self, table: str, now_ms: int, conn: sqlite3.Connection) -> int:
        if table == "inputs":
            statement = (
                "UPDATE records SET sealed_inputs = X'', inputs_expires_ms = NULL"
                " WHERE rowid IN (SELECT rowid FROM records"
                " WHERE inputs_expires_ms <= ? LIMIT ?)")
        elif table in ("traces", "records"):
            statement = (f"DELETE FROM {table} WHERE rowid IN"
                         f" (SELECT rowid FROM {table} WHERE expires_ms <= ? LIMIT ?)")
        else:
            raise ValueError(f"unknown table {table}")
        with transaction(conn):
            cursor = conn.execute(statement, (now_ms, PURGE_CHUNK))
        return cursor.rowcount

    def _reclaim(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA incremental_vacuum({VACUUM_PAGES})").fetchall()
        # Old page images stay in the WAL until a checkpoint; best effort while readers
        # of other connections are active (the next purge truncates it then).
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def _retain(self, request_ids: list[str], expires_ms: int,
                conn: sqlite3.Connection) -> int:
        changed = 0
        with transaction(conn):
            for offset in range(0, len(request_ids), IN_CHUNK):
                chunk = request_ids[offset: offset + IN_CHUNK]
                marks = ",".join("?" * len(chunk))
                changed += conn.execute(
                    f"UPDATE traces SET expires_ms = ? WHERE request_id IN ({marks})"
                    " AND expires_ms > ?", (expires_ms, *chunk, _now_ms())).rowcount
        return changed

    def _scan_sealed(self, after: int, limit: int,
                     conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
        now_ms = _now_ms()
        return conn.execute(
            "SELECT rowid, request_id, model, sealed_inputs FROM records"
            " WHERE rowid > ? AND expires_ms > ? AND length(sealed_inputs) > 0"
            " AND (inputs_expires_ms IS NULL OR inputs_expires_ms > ?)"
            " ORDER BY rowid LIMIT ?", (after, now_ms, now_ms, limit)).fetchall()

    def _replace_sealed(self, updates: list[SealedUpdate], conn: sqlite3.Connection) -> int:
        changed = 0
        with transaction(conn):
            for update in updates:
                changed += conn.execute(
                    "UPDATE records SET sealed_inputs = ? WHERE request_id = ?"
                    " AND model = ? AND sealed_inputs = ?",
                    (update.new, update.request_id, update.model, update.old)).rowcount
        return changed
