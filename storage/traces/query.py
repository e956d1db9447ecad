"""Rules every trace store applies to a search before touching its backend."""

from __future__ import annotations

from storage.cursor import CursorPosition, decode_cursor, encode_cursor
from storage.records import StoredTrace, TraceQuery


def locate_start(query: TraceQuery) -> CursorPosition | None:
    """Check the query and return the position to resume after (None from the newest).

    Raises:
        ValueError: the query is malformed (the HTTP layer validates before this).
        CursorInvalid: the cursor was not made by a trace store.
    """
    if query.limit < 1:
        raise ValueError("limit must be at least 1")
    if query.version is not None and query.model is None:
        # No backend indexes a version across models: the name is only unique per model.
        raise ValueError("filtering by version needs a model")
    return None if query.cursor is None else decode_cursor(query.cursor)


def matches_query(trace: StoredTrace, query: TraceQuery) -> bool:
    """Tell whether a trace satisfies every filter of the query (including time bounds)."""
    return (
        (query.model is None or trace.model == query.model)
        and (query.version is None or trace.version == query.version)
        and (query.reason is None or trace.reason == query.reason)
        and (query.incident is None or query.incident in trace.incidents)
        and (query.since_ms is None or trace.event_ms >= query.since_ms)
        and (query.until_ms is None or trace.event_ms < query.until_ms)
    )


def encode_next_cursor(items: list[StoredTrace], limit: int) -> str | None:
    """Return the cursor after the page, or None when no item lies beyond it.

    Stores fetch `limit + 1` items: the extra one only proves there is a next page.
    """
    if len(items) <= limit:
        return None
    last = items[limit - 1]
    return encode_cursor(last.event_ms, last.request_id)
