"""Incidents, attached request IDs and the outbox in SQLite (embedded mode).

Shares the trace store's database file (its own tables, connection and worker thread).
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence
from typing import Any

from storage.cursor import CursorPosition, decode_cursor, encode_cursor
from storage.incidents.records import (
    INCIDENT_OPEN,
    TERMINAL_JOB_STATES,
    AttachedPage,
    AttachedRequest,
    StoredIncident,
    StoredJob,
)
from storage.sqlite_worker import BACKEND, SqliteWorker, transaction

SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS incidents (
    incident_id TEXT PRIMARY KEY,
    state       TEXT NOT NULL,
    opened_ms   INTEGER NOT NULL,
    body        BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_by_state ON incidents (state, opened_ms);
CREATE INDEX IF NOT EXISTS incidents_by_time ON incidents (opened_ms);
CREATE TABLE IF NOT EXISTS incident_requests (
    incident_id TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    attached_ms INTEGER NOT NULL,
    PRIMARY KEY (incident_id, request_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS incident_requests_by_time
    ON incident_requests (incident_id, attached_ms, request_id);
CREATE TABLE IF NOT EXISTS outbox_jobs (
    job_id      TEXT PRIMARY KEY,
    incident_id TEXT NOT NULL,
    state       TEXT NOT NULL,
    due_ms      INTEGER NOT NULL,
    created_ms  INTEGER NOT NULL,
    body        BLOB NOT NULL,
    payload     BLOB
);
CREATE INDEX IF NOT EXISTS outbox_jobs_due ON outbox_jobs (due_ms)
    WHERE state NOT IN ('done', 'failed');
CREATE INDEX IF NOT EXISTS outbox_jobs_by_incident ON outbox_jobs (incident_id, created_ms);
COMMIT;
"""

_TERMINAL = tuple(sorted(TERMINAL_JOB_STATES))


class SqliteIncidentStore:
    """`IncidentStore` and `JobQueue` on SQLite."""

    backend = BACKEND

    def __init__(self, path: str) -> None:
        self._worker = SqliteWorker(path, schema=SCHEMA, thread_name="whylens-incidents")

    async def create_incident(self, incident: StoredIncident) -> bool:
        """Insert the incident; False when its ID is taken."""
        return await self._worker.run(functools.partial(self._create, incident))

    async def get_incident(self, incident_id: str) -> StoredIncident | None:
        """Return the incident, or None."""
        row = await self._worker.run(lambda conn: conn.execute(
            "SELECT body FROM incidents WHERE incident_id = ?", (incident_id,)).fetchone())
        return None if row is None else StoredIncident.from_json(bytes(row[0]))

    async def list_incidents(self, *, open_only: bool = False,
                             limit: int = 100) -> list[StoredIncident]:
        """Return incidents newest first (only open ones with `open_only`)."""
        where = "WHERE state = ?" if open_only else ""
        params: tuple[Any, ...] = (INCIDENT_OPEN, limit) if open_only else (limit,)
        rows = await self._worker.run(lambda conn: conn.execute(
            f"SELECT body FROM incidents {where} ORDER BY opened_ms DESC, incident_id DESC"
            " LIMIT ?", params).fetchall())
        return [StoredIncident.from_json(bytes(row[0])) for row in rows]

    async def save_incident(self, incident: StoredIncident) -> None:
        """Replace the stored incident (state changes)."""
        await self._worker.run(lambda conn: conn.execute(
            "UPDATE incidents SET state = ?, body = ? WHERE incident_id = ?",
            (incident.state, incident.to_json(), incident.incident_id)))

    async def attach_requests(self, incident_id: str, request_ids: Sequence[str], *,
                              attached_ms: int) -> int:
        """Attach request IDs (the first attachment time stands); return how many were new."""
        if not request_ids:
            return 0
        return await self._worker.run(functools.partial(
            self._attach, incident_id, list(dict.fromkeys(request_ids)), attached_ms))

    async def attached_requests(self, incident_id: str, *, limit: int,
                                cursor: str | None) -> AttachedPage:
        """Return a page of attached request IDs, newest attachment first."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        start = None if cursor is None else decode_cursor(cursor)
        return await self._worker.run(functools.partial(
            self._attached, incident_id, limit, start))

    async def enqueue_job(self, job: StoredJob, payload: bytes | None) -> StoredJob:
        """Insert the job unless its ID exists; return the stored job either way."""
        return await self._worker.run(functools.partial(self._enqueue, job, payload))

    async def claim_jobs(self, *, now_ms: int, lease_ms: int, limit: int) -> list[StoredJob]:
        """Return due unfinished jobs, pushing their due time to the end of the lease."""
        return await self._worker.run(functools.partial(self._claim, now_ms, lease_ms, limit))

    async def save_job(self, job: StoredJob) -> None:
        """Replace the job's state; a finished job drops its payload."""
        await self._worker.run(functools.partial(self._save_job, job))

    async def jobs_of(self, incident_id: str) -> list[StoredJob]:
        """Return the incident's jobs, oldest first."""
        rows = await self._worker.run(lambda conn: conn.execute(
            "SELECT body FROM outbox_jobs WHERE incident_id = ? ORDER BY created_ms, job_id",
            (incident_id,)).fetchall())
        return [StoredJob.from_json(bytes(row[0])) for row in rows]

    async def job_payload(self, job_id: str) -> bytes | None:
        """Return the job's payload (None once finished, or when it had none)."""
        row = await self._worker.run(lambda conn: conn.execute(
            "SELECT payload FROM outbox_jobs WHERE job_id = ?", (job_id,)).fetchone())
        return None if row is None or row[0] is None else bytes(row[0])

    async def ping(self) -> None:
        """Run a trivial query."""
        await self._worker.run(lambda conn: conn.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        """Close the connection."""
        await self._worker.close()

    @staticmethod
    def _create(incident: StoredIncident, conn: sqlite3.Connection) -> bool:
        cursor = conn.execute(
            "INSERT OR IGNORE INTO incidents (incident_id, state, opened_ms, body)"
            " VALUES (?, ?, ?, ?)",
            (incident.incident_id, incident.state, incident.opened_ms, incident.to_json()))
        return cursor.rowcount == 1

    @staticmethod
    def _attach(incident_id: str, request_ids: list[str], attached_ms: int,
                conn: sqlite3.Connection) -> int:
        with transaction(conn):
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO incident_requests (incident_id, request_id, attached_ms)"
                " VALUES (?, ?, ?)", [(incident_id, rid, attached_ms) for rid in request_ids])
            return conn.total_changes - before

    @staticmethod
    def _attached(incident_id: str, limit: int, start: CursorPosition | None,
                  conn: sqlite3.Connection) -> AttachedPage:
        resume = "" if start is None else " AND (attached_ms, request_id) < (?, ?)"
        params: tuple[Any, ...] = (incident_id,) if start is None else (
            incident_id, start.event_ms, start.request_id)
        rows = conn.execute(
            "SELECT request_id, attached_ms FROM incident_requests WHERE incident_id = ?"
            f"{resume} ORDER BY attached_ms DESC, request_id DESC LIMIT ?",
            (*params, limit + 1)).fetchall()
        total = conn.execute("SELECT count(*) FROM incident_requests WHERE incident_id = ?",
                             (incident_id,)).fetchone()[0]
        items = [AttachedRequest(row[0], row[1]) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            next_cursor = encode_cursor(items[-1].attached_ms, items[-1].request_id)
        return AttachedPage(items=items, next_cursor=next_cursor, total=int(total))

    @staticmethod
    def _enqueue(job: StoredJob, payload: bytes | None, conn: sqlite3.Connection) -> StoredJob:
        with transaction(conn):
            row = conn.execute("SELECT body FROM outbox_jobs WHERE job_id = ?",
                               (job.job_id,)).fetchone()
            if row is not None:
                return StoredJob.from_json(bytes(row[0]))
            conn.execute(
                "INSERT INTO outbox_jobs (job_id, incident_id, state, due_ms, created_ms, body,"
                " payload) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (job.job_id, job.incident_id, job.state, job.due_ms, job.created_ms,
                 job.to_json(), payload))
        return job

    @staticmethod
    def _claim(now: int, lease_ms: int, limit: int,
               conn: sqlite3.Connection) -> list[StoredJob]:
        marks = ",".join("?" * len(_TERMINAL))
        with transaction(conn):
            rows = conn.execute(
                f"SELECT job_id, body FROM outbox_jobs WHERE state NOT IN ({marks})"
                " AND due_ms <= ? ORDER BY due_ms, job_id LIMIT ?",
                (*_TERMINAL, now, limit)).fetchall()
            conn.executemany("UPDATE outbox_jobs SET due_ms = ? WHERE job_id = ?",
                             [(now + lease_ms, row[0]) for row in rows])
        return [StoredJob.from_json(bytes(row[1])) for row in rows]

    @staticmethod
    def _save_job(job: StoredJob, conn: sqlite3.Connection) -> None:
        if job.terminal:
            conn.execute(
                "UPDATE outbox_jobs SET state = ?, due_ms = ?, body = ?, payload = NULL"
                " WHERE job_id = ?", (job.state, job.due_ms, job.to_json(), job.job_id))
        else:
            conn.execute(
                "UPDATE outbox_jobs SET state = ?, due_ms = ?, body = ? WHERE job_id = ?",
                (job.state, job.due_ms, job.to_json(), job.job_id))
