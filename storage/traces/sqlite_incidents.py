"""Linking existing traces to an incident in the SQLite store (runs on its worker thread)."""

from __future__ import annotations

import json
import sqlite3

from storage.sqlite_worker import transaction
from storage.traces import sqlite_schema as schema

# SQLite caps bound parameters per statement; chunk IN lists well below the cap.
IN_CHUNK = 500


def link_incident(incident_id: str, request_ids: list[str], now_ms: int,
                  conn: sqlite3.Connection) -> list[str]:
    """Link live traces to the incident and hold them past retention; return the linked IDs.

    Adds the incident to the trace's `incidents` (what a read returns) and to the
    `trace_incidents` index (what `?incident=` searches), in one transaction.
    """
    linked: list[str] = []
    with transaction(conn):
        for offset in range(0, len(request_ids), IN_CHUNK):
            chunk = request_ids[offset: offset + IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(
                f"SELECT request_id, incidents FROM traces WHERE request_id IN ({marks})"
                " AND expires_ms > ?", (*chunk, now_ms)).fetchall()
            updates = []
            for request_id, incidents_json in rows:
                incidents = list(json.loads(incidents_json))
                if incident_id not in incidents:
                    incidents.append(incident_id)
                updates.append((json.dumps(incidents), schema.HELD_MS, request_id))
                linked.append(request_id)
            conn.executemany("UPDATE traces SET incidents = ?, expires_ms = ?"
                             " WHERE request_id = ?", updates)
            conn.executemany(
                "INSERT OR IGNORE INTO trace_incidents (incident_id, request_id) VALUES (?, ?)",
                [(incident_id, rid) for _, _, rid in updates])
    return linked
