"""Tables, indexes and row mapping of the embedded SQLite trace store."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from storage.records import StoredRecord, StoredTrace, TraceQuery

# Bumped with every incompatible change, so a later version can migrate old files.
SCHEMA_VERSION = 1

# Indexes end in request_id because searches order by (event_ms, request_id) and resume
# from a cursor on both; without it SQLite sorts every tie group in a temporary b-tree.
SCHEMA = f"""
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS traces (
    request_id TEXT PRIMARY KEY,
    model      TEXT NOT NULL,
    version    TEXT NOT NULL,
    reason     TEXT,
    event_ms   INTEGER NOT NULL,
    body       BLOB NOT NULL,
    incidents  TEXT NOT NULL DEFAULT '[]',
    expires_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS traces_by_model ON traces (model, event_ms, request_id);
CREATE INDEX IF NOT EXISTS traces_by_version ON traces (model, version, event_ms, request_id);
CREATE INDEX IF NOT EXISTS traces_by_reason ON traces (reason, event_ms, request_id);
CREATE INDEX IF NOT EXISTS traces_by_time ON traces (event_ms, request_id);
CREATE INDEX IF NOT EXISTS traces_by_expiry ON traces (expires_ms);
CREATE TABLE IF NOT EXISTS trace_incidents (
    incident_id TEXT NOT NULL,
    request_id  TEXT NOT NULL REFERENCES traces (request_id) ON DELETE CASCADE,
    PRIMARY KEY (incident_id, request_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS trace_incidents_by_request ON trace_incidents (request_id);
CREATE TABLE IF NOT EXISTS records (
    request_id    TEXT PRIMARY KEY,
    model         TEXT NOT NULL,
    version       TEXT NOT NULL,
    event_ms      INTEGER NOT NULL,
    received_ms   INTEGER NOT NULL,
    sampled       INTEGER NOT NULL,
    reason        TEXT,
    body          BLOB NOT NULL,
    sealed_inputs BLOB NOT NULL,
    expires_ms    INTEGER NOT NULL,
    inputs_expires_ms INTEGER
);
CREATE INDEX IF NOT EXISTS records_by_expiry ON records (expires_ms);
CREATE INDEX IF NOT EXISTS records_by_inputs_expiry ON records (inputs_expires_ms)
    WHERE inputs_expires_ms IS NOT NULL;
PRAGMA user_version = {SCHEMA_VERSION};
COMMIT;
"""

TRACE_COLUMNS = "t.request_id, t.model, t.version, t.reason, t.event_ms, t.body, t.incidents"
# inputs_expires_ms last: sealed inputs past their own retention read as empty.
RECORD_COLUMNS = (
    "request_id, model, version, event_ms, received_ms, sampled, reason, body, sealed_inputs,"
    " inputs_expires_ms"
)
# Far beyond any real expiry: a trace held (linked to an open incident) until released.
HELD_MS = 2**62

UPSERT_TRACE = """
INSERT INTO traces (request_id, model, version, reason, event_ms, body, incidents, expires_ms)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (request_id) DO UPDATE SET
    model = excluded.model, version = excluded.version, reason = excluded.reason,
    event_ms = excluded.event_ms, body = excluded.body, incidents = excluded.incidents,
    expires_ms = excluded.expires_ms
"""

# The caller has already read the live rows under the write lock, so a conflict here can
# only be an expired row that was not purged yet; the guard keeps a live one untouchable.
INSERT_RECORD = """
INSERT INTO records (request_id, model, version, event_ms, received_ms, sampled, reason,
                     body, sealed_inputs, expires_ms, inputs_expires_ms)
VALUES (:request_id, :model, :version, :event_ms, :received_ms, :sampled, :reason,
        :body, :sealed_inputs, :expires_ms, :inputs_expires_ms)
ON CONFLICT (request_id) DO UPDATE SET
    model = excluded.model, version = excluded.version, event_ms = excluded.event_ms,
    received_ms = excluded.received_ms, sampled = excluded.sampled, reason = excluded.reason,
    body = excluded.body, sealed_inputs = excluded.sealed_inputs,
    expires_ms = excluded.expires_ms, inputs_expires_ms = excluded.inputs_expires_ms
WHERE records.expires_ms <= :now_ms
"""


def trace_row(trace: StoredTrace, expires_ms: int) -> tuple[Any, ...]:
    """Return the UPSERT_TRACE parameters of a trace."""
    return (trace.request_id, trace.model, trace.version, trace.reason, trace.event_ms,
            trace.body, json.dumps(list(trace.incidents)), expires_ms)


def trace_from_row(row: tuple[Any, ...]) -> StoredTrace:
    """Return the trace of a row selected with TRACE_COLUMNS."""
    request_id, model, version, reason, event_ms, body, incidents = row
    return StoredTrace(request_id=request_id, model=model, version=version, reason=reason,
                       event_ms=event_ms, body=bytes(body),
                       incidents=tuple(json.loads(incidents)))


def migrate(conn: sqlite3.Connection) -> None:
    """Bring a file made by an older version up to SCHEMA (run before SCHEMA)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(records)")}
    if columns and "inputs_expires_ms" not in columns:
        conn.execute("ALTER TABLE records ADD COLUMN inputs_expires_ms INTEGER")


def record_params(record: StoredRecord, *, expires_ms: int, now_ms: int,
                  inputs_expires_ms: int | None = None) -> dict[str, Any]:
    """Return the INSERT_RECORD parameters of a record."""
    return {
        "request_id": record.request_id, "model": record.model, "version": record.version,
        "event_ms": record.event_ms, "received_ms": record.received_ms,
        "sampled": int(record.sampled), "reason": record.reason, "body": record.body,
        "sealed_inputs": record.sealed_inputs, "expires_ms": expires_ms, "now_ms": now_ms,
        "inputs_expires_ms": inputs_expires_ms,
    }


def record_from_row(row: tuple[Any, ...], now_ms: int) -> StoredRecord:
    """Return the record of a row selected with RECORD_COLUMNS (inputs blank once expired)."""
    (request_id, model, version, event_ms, received_ms, sampled, reason, body, sealed,
     inputs_expires_ms) = row
    if inputs_expires_ms is not None and inputs_expires_ms <= now_ms:
        sealed = b""
    return StoredRecord(request_id=request_id, model=model, version=version,
                        event_ms=event_ms, received_ms=received_ms, sampled=bool(sampled),
                        reason=reason, body=bytes(body), sealed_inputs=bytes(sealed))


def search_sql(query: TraceQuery, *, resume: bool) -> str:
    """Return the SELECT of one search page; parameters are named after TraceQuery fields.

    Only the filters the query sets appear, so SQLite picks the index that fits them.
    """
    join = ""
    if query.incident is not None:
        join = (" JOIN trace_incidents AS i"
                " ON i.request_id = t.request_id AND i.incident_id = :incident")
    clauses = ["t.expires_ms > :now_ms"]
    for column, value in (("model", query.model), ("version", query.version),
                          ("reason", query.reason)):
        if value is not None:
            clauses.append(f"t.{column} = :{column}")
    if query.since_ms is not None:
        clauses.append("t.event_ms >= :since_ms")
    if query.until_ms is not None:
        clauses.append("t.event_ms < :until_ms")
    if resume:
        clauses.append("(t.event_ms, t.request_id) < (:after_ms, :after_id)")
    return (f"SELECT {TRACE_COLUMNS} FROM traces AS t{join} WHERE {' AND '.join(clauses)}"
            " ORDER BY t.event_ms DESC, t.request_id DESC LIMIT :fetch")
