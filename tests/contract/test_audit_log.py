"""One contract for every AuditLog implementation: SQLite table and Redis Stream."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio

from storage.audit.records import AuditEvent, AuditQuery
from storage.audit.redis import RedisAuditLog
from storage.audit.sqlite import SqliteAuditLog
from storage.audit_factory import open_audit_log
from storage.errors import CursorInvalid
from storage.protocols import AuditLog

Log = SqliteAuditLog | RedisAuditLog

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("redis", id="redis", marks=pytest.mark.integration),
]


@pytest.fixture(params=BACKENDS)
async def open_log(request: pytest.FixtureRequest, tmp_path: Path,
                   unique_prefix: str) -> AsyncIterator[Callable[..., Log]]:
    url = (str(request.getfixturevalue("redis_url")) if request.param == "redis"
           else f"sqlite:///{tmp_path}/traces.db")
    opened: list[Log] = []

    def make(max_entries: int = 10_000) -> Log:
        log = open_audit_log(url, key_prefix=unique_prefix, max_entries=max_entries)
        opened.append(log)
        return log

    yield make
    for log in opened:
        await log.close()
    if request.param == "redis":
        client = redis.asyncio.Redis.from_url(url)
        await client.delete(f"{unique_prefix}:audit")
        await client.aclose()


def event(i: int, *, at_ms: int | None = None, actor: str = "alice") -> AuditEvent:
    return AuditEvent(at_ms=at_ms if at_ms is not None else time.time_ns() // 1_000_000,
                      actor=actor, action="trace.unmask", target=f"GET /v1/traces/r-{i}",
                      request_id=f"r-{i}", status=200, detail={"features": "zip_code"})


async def test_appended_events_come_back_newest_first_with_every_field(
        open_log: Callable[..., Log]) -> None:
    log: AuditLog = open_log()
    ids = [await log.append(event(i)) for i in range(3)]
    assert len(set(ids)) == 3
    page = await log.page(AuditQuery(limit=10))
    assert [entry.event for entry in page.items] == [event(2, at_ms=page.items[0].event.at_ms),
                                                     event(1, at_ms=page.items[1].event.at_ms),
                                                     event(0, at_ms=page.items[2].event.at_ms)]
    assert [entry.entry_id for entry in page.items] == ids[::-1]
    assert page.next_cursor is None


async def test_pages_follow_the_cursor_without_gaps_or_repeats(
        open_log: Callable[..., Log]) -> None:
    log = open_log()
    for i in range(25):
        await log.append(event(i))
    seen: list[str | None] = []
    query = AuditQuery(limit=7)
    while True:
        page = await log.page(query)
        assert len(page.items) <= 7
        seen += [entry.event.request_id for entry in page.items]
        if page.next_cursor is None:
            break
        query = AuditQuery(limit=7, cursor=page.next_cursor)
    assert seen == [f"r-{i}" for i in reversed(range(25))]


async def test_time_bounds_select_entries_by_when_they_happened(
        open_log: Callable[..., Log]) -> None:
    log = open_log()
    first = await log.append(event(1))
    time.sleep(0.01)
    split = time.time_ns() // 1_000_000
    time.sleep(0.01)
    await log.append(event(2))
    before = await log.page(AuditQuery(until_ms=split))
    after = await log.page(AuditQuery(since_ms=split))
    assert [e.entry_id for e in before.items] == [first]
    assert [e.event.request_id for e in after.items] == ["r-2"]


async def test_a_foreign_cursor_is_refused(open_log: Callable[..., Log]) -> None:
    with pytest.raises(CursorInvalid):
        await open_log().page(AuditQuery(cursor="not-a-cursor'; DROP TABLE x"))


async def test_the_log_stays_bounded_by_its_cap(open_log: Callable[..., Log],
                                               tmp_path: Path) -> None:
    log = open_log(max_entries=20)
    if isinstance(log, SqliteAuditLog):
        # The same file, trimming every 50 appends instead of every 1000.
        await log.close()
        log = SqliteAuditLog(str(tmp_path / "traces.db"), max_entries=20, trim_every=50)
    try:
        for i in range(300):
            await log.append(event(i))
        page = await log.page(AuditQuery(limit=500))
    finally:
        await log.close()
    # Both backends trim approximately (Redis by whole stream nodes, SQLite in batches).
    assert 20 <= len(page.items) < 300
    assert page.items[0].event.request_id == "r-299"


async def test_sqlite_rows_cannot_be_changed_or_deleted(tmp_path: Path) -> None:
    log = SqliteAuditLog(str(tmp_path / "a.db"), max_entries=1000)
    await log.append(event(1))
    await log.close()
    conn = sqlite3.connect(tmp_path / "a.db")
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE audit_log SET actor = 'mallory'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM audit_log")
        assert conn.execute("SELECT actor FROM audit_log").fetchall() == [("alice",)]
    finally:
        conn.close()
