"""One contract for every IncidentStore + JobQueue implementation: SQLite and Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest
import redis.asyncio

from storage.errors import CursorInvalid
from storage.incident_factory import open_incident_store
from storage.incidents.records import (
    INCIDENT_CLOSED,
    INCIDENT_OPEN,
    JOB_DONE,
    JOB_FAILED,
    JOB_QUEUED,
    JOB_RETRYING,
    StoredIncident,
    StoredJob,
)
from storage.incidents.redis import RedisIncidentStore
from storage.incidents.sqlite import SqliteIncidentStore
from storage.protocols import IncidentStore, JobQueue

Store = SqliteIncidentStore | RedisIncidentStore

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("redis", id="redis", marks=pytest.mark.integration),
]


@pytest.fixture(params=BACKENDS)
async def open_store(request: pytest.FixtureRequest, tmp_path: Path,
                     unique_prefix: str) -> AsyncIterator[Callable[[], Store]]:
    """Open stores on one database (several, like replicas)."""
    backend = str(request.param)
    url = (str(request.getfixturevalue("redis_url")) if backend == "redis"
           else f"sqlite:///{tmp_path}/traces.db")
    opened: list[Store] = []

    def make() -> Store:
        store = open_incident_store(url, key_prefix=unique_prefix)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()
    if backend == "redis":
        client = redis.asyncio.Redis.from_url(url)
        try:
            keys = [k async for k in client.scan_iter(match=f"{unique_prefix}:*", count=1000)]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()


@pytest.fixture
def store(open_store: Callable[[], Store]) -> Store:
    return open_store()


def incident(incident_id: str, opened_ms: int, *, model: str = "credit",
             state: str = INCIDENT_OPEN) -> StoredIncident:
    return StoredIncident(incident_id=incident_id, model=model, title=f"t {incident_id}",
                          severity=2, state=state, explain_all=True, opened_ms=opened_ms,
                          opened_by="oncall")


def job(job_id: str, *, due_ms: int, incident_id: str = "INC1", created_ms: int = 1) -> StoredJob:
    return StoredJob(job_id=job_id, incident_id=incident_id, kind="export", state=JOB_QUEUED,
                     attempts=0, due_ms=due_ms, created_ms=created_ms, updated_ms=created_ms,
                     detail=b'{"target":"servicenow"}')


def test_both_stores_satisfy_the_protocols(store: Store) -> None:
    incidents: IncidentStore = store
    jobs: JobQueue = store
    assert incidents.backend in {"sqlite", "redis"} and jobs is store


async def test_create_is_refused_for_a_taken_id_and_get_round_trips(store: Store) -> None:
    first = incident("INC:0001 x", 1000)
    assert await store.create_incident(first)
    assert not await store.create_incident(replace(first, title="other"))
    assert await store.get_incident("INC:0001 x") == first
    assert await store.get_incident("nope") is None


async def test_listing_is_newest_first_and_open_only_follows_state(store: Store) -> None:
    for i in range(5):
        await store.create_incident(incident(f"I{i}", 1000 + i))
    closed = replace(incident("I3", 1003), state=INCIDENT_CLOSED, closed_ms=2000)
    await store.save_incident(closed)
    everything = await store.list_incidents()
    assert [i.incident_id for i in everything] == ["I4", "I3", "I2", "I1", "I0"]
    assert [i.incident_id for i in await store.list_incidents(open_only=True)] == [
        "I4", "I2", "I1", "I0"]
    assert [i.incident_id for i in await store.list_incidents(limit=2)] == ["I4", "I3"]
    assert await store.get_incident("I3") == closed
    await store.save_incident(replace(closed, state=INCIDENT_OPEN, closed_ms=None))
    assert "I3" in [i.incident_id for i in await store.list_incidents(open_only=True)]


async def test_attach_keeps_first_time_and_pages_newest_first(store: Store) -> None:
    await store.create_incident(incident("INC1", 1))
    assert await store.attach_requests("INC1", ["a", "b", "a"], attached_ms=100) == 2
    assert await store.attach_requests("INC1", ["b", "c", "d", "e"], attached_ms=200) == 3
    seen: list[tuple[str, int]] = []
    cursor = None
    while True:
        page = await store.attached_requests("INC1", limit=2, cursor=cursor)
        assert page.total == 5
        seen += [(i.request_id, i.attached_ms) for i in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [("e", 200), ("d", 200), ("c", 200), ("b", 100), ("a", 100)]
    other = await store.attached_requests("INC2", limit=10, cursor=None)
    assert (other.items, other.total, other.next_cursor) == ([], 0, None)
    with pytest.raises(CursorInvalid):
        await store.attached_requests("INC1", limit=2, cursor="junk!")


async def test_enqueue_is_idempotent_by_job_id(store: Store) -> None:
    first = job("j1", due_ms=10)
    assert await store.enqueue_job(first, b"bundle-1") == first
    again = await store.enqueue_job(replace(first, detail=b'{"x":1}'), b"bundle-2")
    assert again == first
    assert await store.job_payload("j1") == b"bundle-1"
    assert await store.job_payload("nope") is None


async def test_claim_leases_due_jobs_once_until_the_lease_ends(
        open_store: Callable[[], Store]) -> None:
    one, two = open_store(), open_store()
    await one.enqueue_job(job("due", due_ms=100), None)
    await one.enqueue_job(job("later", due_ms=5000), None)
    claims = await asyncio.gather(one.claim_jobs(now_ms=200, lease_ms=1000, limit=10),
                                  two.claim_jobs(now_ms=200, lease_ms=1000, limit=10))
    assert sorted(j.job_id for c in claims for j in c) == ["due"]
    assert await one.claim_jobs(now_ms=1100, lease_ms=1000, limit=10) == []
    again = await two.claim_jobs(now_ms=1200, lease_ms=1000, limit=10)
    assert [j.job_id for j in again] == ["due"]


async def test_saved_job_is_rescheduled_and_finished_jobs_are_never_claimed(
        store: Store) -> None:
    await store.enqueue_job(job("a", due_ms=0), b"payload-a")
    await store.enqueue_job(job("b", due_ms=0, created_ms=2), b"payload-b")
    claimed = {j.job_id: j for j in await store.claim_jobs(now_ms=10, lease_ms=10_000,
                                                           limit=10)}
    retry = replace(claimed["a"], state=JOB_RETRYING, attempts=1, due_ms=50,
                    detail=b'{"last_error":"500"}')
    await store.save_job(retry)
    await store.save_job(replace(claimed["b"], state=JOB_DONE, attempts=1))
    assert await store.claim_jobs(now_ms=40, lease_ms=100, limit=10) == []
    assert await store.claim_jobs(now_ms=60, lease_ms=100, limit=10) == [retry]
    assert await store.job_payload("a") == b"payload-a"
    assert await store.job_payload("b") is None
    await store.save_job(replace(retry, state=JOB_FAILED))
    assert await store.claim_jobs(now_ms=10**12, lease_ms=100, limit=10) == []
    states = {j.job_id: (j.state, j.detail) for j in await store.jobs_of("INC1")}
    assert states == {"a": (JOB_FAILED, b'{"last_error":"500"}'), "b": (JOB_DONE,
                                                                        b'{"target":"servicenow"}')}
    assert [j.job_id for j in await store.jobs_of("INC1")] == ["a", "b"]
    assert await store.jobs_of("other") == []


async def test_jobs_survive_reopening_the_store(open_store: Callable[[], Store]) -> None:
    first = open_store()
    await first.enqueue_job(job("persist", due_ms=0), b"x" * 10_000)
    await first.close()
    second = open_store()
    claimed = await second.claim_jobs(now_ms=1, lease_ms=10, limit=5)
    assert [j.job_id for j in claimed] == ["persist"]
    assert await second.job_payload("persist") == b"x" * 10_000
