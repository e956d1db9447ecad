"""Incident-linked traces: held while an incident is open, gone after close + its retention."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pandas as pd
import pytest
import redis.asyncio

from service.settings import RetentionSettings, Settings
from storage.keyring import create_keyring_file
from storage.manifest import RetentionOverrides
from tests.api.conftest import CanaryPair, record_from
from tests.api.incident_support import isolated, running_app, wait_until

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("redis", id="redis", marks=pytest.mark.integration),
]

# Seconds: the store's own retention of traces and the incident retention of `credit`.
SHORT_S = 1

StoredCheck = Callable[[str], Awaitable[bool]]


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path,
                  unique_prefix: str) -> AsyncIterator[tuple[dict[str, object], StoredCheck]]:
    """Settings changes for the backend, and a check that reads the raw store."""
    if request.param == "sqlite":
        path = tmp_path / "traces.db"

        async def in_sqlite(request_id: str) -> bool:
            with sqlite3.connect(path) as conn:
                row = conn.execute("SELECT count(*) FROM traces WHERE request_id = ?",
                                   (request_id,)).fetchone()
            return bool(row[0])

        yield {"traces": f"sqlite:///{path}"}, in_sqlite
        return
    url = str(request.getfixturevalue("redis_url"))
    client = redis.asyncio.Redis.from_url(url)
    keyring = tmp_path / "keyring.yaml"
    create_keyring_file(keyring)

    async def in_redis(request_id: str) -> bool:
        return bool(await client.exists(f"{unique_prefix}:{{credit}}:t:{request_id}"))

    try:
        yield {"traces": url, "redis_key_prefix": unique_prefix, "keyring": keyring}, in_redis
    finally:
        keys = [k async for k in client.scan_iter(match=f"{unique_prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def short_retention(**incident: int) -> RetentionSettings:
    # purge_interval_s=1: the embedded store's periodic purge deletes expired rows.
    return RetentionSettings(traces_s=SHORT_S, purge_interval_s=1, models={
        "credit": RetentionOverrides(incident_traces_s=incident.get("credit", SHORT_S))})


async def ingest(http: httpx.AsyncClient, frame: pd.DataFrame, row: int,
                 request_id: str) -> None:
    answer = (await http.post("/v1/predictions",
                              json=record_from(frame, row, request_id))).json()
    assert (answer["sampled"], answer["reason"]) == (True, "incident"), answer


async def open_incident(http: httpx.AsyncClient, incident_id: str, *,
                        explain_all: bool) -> None:
    answer = await http.post("/v1/incidents", json={
        "id": incident_id, "model": "credit", "title": "t", "severity": 2,
        "explain_all": explain_all})
    assert answer.status_code == 201, answer.text


async def gone(stored: StoredCheck, request_id: str) -> None:
    async def absent() -> bool:
        return not await stored(request_id)
    await wait_until(absent, timeout_s=20, what=f"{request_id} to leave the store")


async def test_linked_traces_are_held_while_open_and_gone_after_close_plus_retention(
        canary_pair: CanaryPair, credit_frame: pd.DataFrame, tmp_path: Path,
        backend: tuple[dict[str, object], StoredCheck]) -> None:
    changes, stored = backend
    settings: Settings = isolated(canary_pair.settings, tmp_path,
                                  retention=short_retention(), **changes)
    async with running_app(settings) as http:
        await open_incident(http, "INC-A", explain_all=True)
        await open_incident(http, "INC-B", explain_all=False)
        await ingest(http, credit_frame, 1, "a-only")
        await ingest(http, credit_frame, 2, "a-and-b")
        attached = (await http.post("/v1/incidents/INC-B/traces",
                                    json={"request_ids": ["a-and-b"]})).json()
        assert attached["attached"] == ["a-and-b"]
        # Past the store's own trace retention, the open incidents still hold both.
        await asyncio.sleep(SHORT_S + 1.5)
        for request_id in ("a-only", "a-and-b"):
            assert await stored(request_id)
            assert (await http.get(f"/v1/traces/{request_id}")).status_code == 200
        closed = await http.post("/v1/incidents/INC-A/close")
        assert closed.status_code == 200
        await gone(stored, "a-only")
        assert (await http.get("/v1/traces/a-only")).status_code == 404
        # Closing A must not shorten the hold of B, which is still open.
        assert await stored("a-and-b")
        kept = await http.get("/v1/traces/a-and-b")
        assert kept.status_code == 200 and kept.json()["incidents"] == ["INC-A", "INC-B"]
        assert (await http.post("/v1/incidents/INC-B/close")).status_code == 200
        await gone(stored, "a-and-b")
        assert (await http.get("/v1/traces/a-and-b")).status_code == 404
        assert (await http.get("/v1/traces?incident=INC-B")).json()["traces"] == []


@pytest.mark.integration
async def test_release_sets_close_plus_incident_retention_on_every_redis_key(
        canary_pair: CanaryPair, credit_frame: pd.DataFrame, tmp_path: Path,
        redis_url: str, unique_prefix: str) -> None:
    hour_s = 3600
    keyring = tmp_path / "keyring.yaml"
    create_keyring_file(keyring)
    settings = isolated(canary_pair.settings, tmp_path, traces=redis_url,
                        redis_key_prefix=unique_prefix,
                        keyring=keyring,
                        retention=short_retention(credit=hour_s))
    client = redis.asyncio.Redis.from_url(redis_url)
    head = f"{unique_prefix}:{{credit}}"
    try:
        async with running_app(settings) as http:
            await open_incident(http, "INC-T", explain_all=True)
            # More traces than one release page, so the release pages through them.
            for start in range(0, 520, 130):
                records = [record_from(credit_frame, i % 200, f"t-{i}")
                           for i in range(start, start + 130)]
                answer = await http.post("/v1/predictions", json={"records": records})
                assert answer.status_code == 200
            assert await client.pttl(f"{head}:t:t-0") == -1
            assert await client.pttl(f"{unique_prefix}:ix:i:INC-T") == -1
            await http.post("/v1/incidents/INC-T/close")
            closed_ms = int(time.time() * 1000)
            expected_ms = closed_ms + hour_s * 1000
            for key in [f"{head}:t:t-0", f"{head}:t:t-519", f"{head}:ix:i:INC-T",
                        f"{unique_prefix}:ix:i:INC-T"]:
                expires_ms = await client.pexpiretime(key)
                assert expected_ms - 60_000 < expires_ms <= expected_ms, key
            # Attaching to a closed incident holds no longer than its release.
            await http.post("/v1/incidents", json={"id": "INC-U", "model": "credit",
                                                   "title": "t", "severity": 2})
            await ingest(http, credit_frame, 3, "late")
            assert await client.pttl(f"{head}:t:late") == -1
            await http.post("/v1/incidents/INC-U/close")
            late_ms = await client.pexpiretime(f"{head}:t:late")
            assert late_ms > closed_ms + (hour_s - 60) * 1000
            await http.post("/v1/incidents/INC-T/traces", json={"request_ids": ["t-1"]})
            expires_ms = await client.pexpiretime(f"{head}:t:t-1")
            assert expected_ms - 60_000 < expires_ms <= expected_ms
    finally:
        keys = [k async for k in client.scan_iter(match=f"{unique_prefix}:*", count=1000)]
        for start in range(0, len(keys), 500):
            await client.delete(*keys[start: start + 500])
        await client.aclose()


async def test_a_retried_incident_record_whose_trace_was_lost_is_linked_again(
        canary_pair: CanaryPair, credit_frame: pd.DataFrame, tmp_path: Path) -> None:
    settings = isolated(canary_pair.settings, tmp_path)
    async with running_app(settings) as http:
        await open_incident(http, "INC-R", explain_all=True)
        await ingest(http, credit_frame, 1, "retried")
        # The trace write is lost (a store failure between the two writes of ingest).
        with sqlite3.connect(tmp_path / "traces.db") as conn:
            conn.execute("DELETE FROM traces WHERE request_id = 'retried'")
        assert (await http.get("/v1/traces/retried")).status_code == 404
        again = (await http.post("/v1/predictions",
                                 json=record_from(credit_frame, 1, "retried"))).json()
        assert again["duplicate"] is True
        trace = (await http.get("/v1/traces/retried")).json()
        assert trace["incidents"] == ["INC-R"]
        found = (await http.get("/v1/traces?incident=INC-R")).json()["traces"]
        assert [t["request_id"] for t in found] == ["retried"]
