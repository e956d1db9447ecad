from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from storage.errors import StoreUnavailable
from storage.records import StoredRecord, StoredTrace, TraceQuery
from storage.traces.sqlite import SqliteTraceStore


def _trace(request_id: str, *, incidents: tuple[str, ...] = ()) -> StoredTrace:
    return StoredTrace(request_id=request_id, model="credit", version="3", reason="sampled",
                       event_ms=1, body=b"{}", incidents=incidents)


async def test_in_memory_database_keeps_data_across_calls() -> None:
    store = SqliteTraceStore(":memory:", trace_ttl_s=60, record_ttl_s=60)
    await store.put_traces([_trace("r-1")])
    assert await store.get_trace("r-1") == _trace("r-1")
    await store.close()


async def test_file_database_is_created_with_wal_and_search_indexes(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "traces.db"
    store = SqliteTraceStore(str(path), trace_ttl_s=60, record_ttl_s=60)
    await store.ping()
    await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        indexes = {row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
        assert {"traces_by_model", "traces_by_version", "traces_by_reason",
                "trace_incidents_by_request"} <= indexes
        plan = " ".join(str(row) for row in conn.execute(
            "EXPLAIN QUERY PLAN SELECT request_id FROM traces WHERE model = 'm'"
            " ORDER BY event_ms DESC, request_id DESC LIMIT 5"))
        assert "traces_by_model" in plan and "TEMP B-TREE" not in plan
    conn.close()


async def test_re_put_replaces_incident_links(tmp_path: Path) -> None:
    store = SqliteTraceStore(str(tmp_path / "t.db"), trace_ttl_s=60, record_ttl_s=60)
    await store.put_traces([_trace("r-1", incidents=("I1", "I2"))])
    await store.put_traces([_trace("r-1", incidents=("I3",))])
    assert (await store.get_trace("r-1") or _trace("x")).incidents == ("I3",)
    assert (await store.search_traces(TraceQuery(incident="I1"))).items == []
    assert len((await store.search_traces(TraceQuery(incident="I3"))).items) == 1
    await store.close()


async def test_calls_after_close_raise_store_unavailable() -> None:
    store = SqliteTraceStore(":memory:", trace_ttl_s=60, record_ttl_s=60)
    await store.close()
    await store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.get_trace("r")


async def test_unopenable_path_raises_store_unavailable(tmp_path: Path) -> None:
    store = SqliteTraceStore(str(tmp_path), trace_ttl_s=60, record_ttl_s=60)
    with pytest.raises(StoreUnavailable) as caught:
        await store.ping()
    assert isinstance(caught.value.__cause__, sqlite3.Error)
    await store.close()


async def test_large_batches_cross_the_parameter_chunks(tmp_path: Path) -> None:
    store = SqliteTraceStore(str(tmp_path / "t.db"), trace_ttl_s=60, record_ttl_s=60)
    records = [StoredRecord(f"r{i}", "credit", "3", i, i, False, None, b"b", b"s")
               for i in range(1200)]
    assert await store.add_records(records[:700]) == [None] * 700
    answers = await store.add_records(records)
    assert answers[:700] == records[:700] and answers[700:] == [None] * 500
    await store.close()


def test_retention_must_be_positive() -> None:
    with pytest.raises(ValueError, match="retention"):
        SqliteTraceStore(":memory:", trace_ttl_s=0, record_ttl_s=60)
