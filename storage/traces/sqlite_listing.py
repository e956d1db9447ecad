"""Listing one model's logged records by event time in the SQLite store."""

from __future__ import annotations

import sqlite3
from typing import Any

from storage.cursor import CursorPosition, encode_cursor
from storage.records import RecordPage, RecordQuery, StoredRecord
from storage.traces import sqlite_schema as schema

# Appended to the trace store's SCHEMA: the listing (and the deferred listing, a partial
# index whose WHERE the query repeats verbatim) walk an index instead of the table.
LISTING_INDEXES = """
CREATE INDEX IF NOT EXISTS records_by_model ON records (model, event_ms, request_id);
CREATE INDEX IF NOT EXISTS records_deferred ON records (model, event_ms, request_id)
    WHERE sampled = 0 AND reason IS NOT NULL;
"""


def select_records(query: RecordQuery, start: CursorPosition | None, now_ms: int,
                   conn: sqlite3.Connection) -> RecordPage:
    """Return one page of live records of `query.model`, newest first."""
    clauses = ["model = :model", "expires_ms > :now_ms"]
    if query.deferred_only:
        clauses.append("sampled = 0 AND reason IS NOT NULL")
    if query.since_ms is not None:
        clauses.append("event_ms >= :since_ms")
    if query.until_ms is not None:
        clauses.append("event_ms < :until_ms")
    if start is not None:
        clauses.append("(event_ms, request_id) < (:after_ms, :after_id)")
    params: dict[str, Any] = {
        "model": query.model, "now_ms": now_ms, "since_ms": query.since_ms,
        "until_ms": query.until_ms, "fetch": query.limit + 1,
        "after_ms": None if start is None else start.event_ms,
        "after_id": None if start is None else start.request_id,
    }
    rows = conn.execute(
        f"SELECT {schema.RECORD_COLUMNS} FROM records WHERE {' AND '.join(clauses)}"
        " ORDER BY event_ms DESC, request_id DESC LIMIT :fetch", params).fetchall()
    items = [schema.record_from_row(row, now_ms) for row in rows]
    return page_of(items, query.limit)


def page_of(items: list[StoredRecord], limit: int) -> RecordPage:
    """Cut `limit + 1` fetched records into a page and the cursor after it."""
    if len(items) <= limit:
        return RecordPage(items=items)
    last = items[limit - 1]
    return RecordPage(items=items[:limit],
                      next_cursor=encode_cursor(last.event_ms, last.request_id))
