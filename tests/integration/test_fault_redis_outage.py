"""Fault: the trace store's Redis stops during steady ingest and comes back.

A throwaway redis-server on its own port (never the shared one) with an fsync'd
append-only file, so that a restart keeps what was stored before the outage.
"""

from __future__ import annotations

import asyncio
import gc
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from service.app import create_app
from service.settings import SamplingSettings, Settings, SpoolSettings
from storage.spool.file import SPOOL_FILE
from tests.integration.scale_out_support import (
    SECRET_ZIP,
    CreditModel,
    free_port,
    record_from,
    wait_for,
)

# A hang fails within 5 minutes with every thread's stack (pytest-timeout), not at the
# suite-wide limit.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

# About a dozen records fit (each spooled frame is about 1.3 kB: log entry plus sealed
# inputs); the test only relies on "more than one and fewer than 100".
SPOOL_CAP = 16_000


class RedisServer:
    """One redis-server process on a free loopback port; stop and start it at will."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = shutil.which("redis-server")
        assert server is not None, "redis-server is not installed"
        self.process = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory),
             "--daemonize", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_for(answers, timeout_s=20, what="redis-server to answer")
        client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def prometheus_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The samples of a Prometheus text exposition, keyed by name and sorted labels."""
    samples = {}
    for match in re.finditer(r"^(\w+)(?:\{(.*)\})? (\S+)$", text, flags=re.MULTILINE):
        labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', match.group(2) or "")))
        samples[(match.group(1), labels)] = float(match.group(3))
    return samples


async def spool_replayed(http: httpx.AsyncClient) -> None:
    """Wait (bounded) until the service is ready again with an empty spool."""
    for _ in range(300):
        body = (await http.get("/readyz")).json()
        if body["status"] == "ready" and body["checks"]["spool"]["records"] == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the spool was not replayed")


# redis-py leaves the connection of a pipeline with registered scripts unreleased when
# loading the scripts fails (the drift counters, during the outage): a ResourceWarning
# from the library, not a leak of ours.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
async def test_records_accepted_during_an_outage_are_stored_once_after_it(
        credit: CreditModel, own_redis: RedisServer, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    settings = Settings(
        data_dir=tmp_path / "data", artifacts=str(credit.artifacts), traces=own_redis.url,
        keyring=credit.keyring, redis_key_prefix="wl", auth="off",
        sampling=SamplingSettings(rate=0.3),
        spool=SpoolSettings(dir=spool_dir, max_bytes=SPOOL_CAP, replay_interval_s=0.2,
                            replay_batch=4))
    app = create_app(settings)
    accepted: dict[str, dict[str, object]] = {}
    refused: list[str] = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://w") as http:
            counter = iter(range(10_000))

            async def send() -> httpx.Response:
                i = next(counter)
                rid = f"o-{i}"
                answer = await http.post("/v1/predictions",
                                         json=record_from(credit.frame, i, rid))
                if answer.status_code == 200:
                    accepted[rid] = answer.json()
                else:
                    refused.append(rid)
                return answer

            for _ in range(15):
                assert (await send()).json().get("spooled") is None
            own_redis.stop()
            outage = [await send(), await send()]
            # A client retry of a spooled record is accepted again; replay keeps one copy.
            duplicate = outage[0].json()["request_id"]
            again = await http.post("/v1/predictions", json=record_from(
                credit.frame, int(duplicate.split("-")[1]), duplicate))
            assert again.status_code == 200 and again.json()["spooled"] is True
            degraded = await http.get("/readyz")
            assert degraded.status_code == 200 and degraded.json()["status"] == "degraded"
            while len(outage) < 100 and outage[-1].status_code == 200:
                outage.append(await send())
            spooled, full = outage[:-1], outage[-1]
            assert len(spooled) > 2 and all(a.json()["spooled"] is True for a in spooled)
            assert full.status_code == 503
            assert full.json()["type"].endswith("/spool-full")
            assert full.headers["content-type"] == "application/problem+json"
            assert (spool_dir / SPOOL_FILE).stat().st_size <= SPOOL_CAP
            for _ in range(3):  # still full: still refused, never silently dropped
                assert (await send()).status_code == 503
            ready = await http.get("/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["spool"]["records"] > 0
            # The spool depth, the refusals and the store errors reach /metrics.
            metrics = prometheus_samples((await http.get("/metrics")).text)
            depth = len(spooled) + 1  # with the client's retry of a spooled record
            assert ready.json()["checks"]["spool"]["records"] == depth
            assert metrics[("whylens_spool_records", ())] == depth
            assert metrics[("whylens_spool_bytes", ())] == (spool_dir / SPOOL_FILE).stat().st_size
            assert metrics[("whylens_spool_refused_total", ())] == 4
            assert metrics[("whylens_store_errors_total", (("backend", "redis"),))] >= depth
            assert SECRET_ZIP.encode() not in (spool_dir / SPOOL_FILE).read_bytes()

            own_redis.start()
            await spool_replayed(http)
            for _ in range(5):
                answer = await send()
                assert answer.status_code == 200 and "spooled" not in answer.json()
            sampled = [rid for rid, body in accepted.items() if body["sampled"]]
            traces = {rid: (await http.get(f"/v1/traces/{rid}")).status_code for rid in sampled}
    client = redis.Redis.from_url(own_redis.url)
    try:
        record_keys = {key.decode().rsplit(":r:", 1)[1]
                       for key in client.scan_iter("wl:{credit}:r:*", count=1000)}
        stored_bodies = {rid: client.get(f"wl:{{credit}}:r:{rid}") for rid in accepted}
    finally:
        client.close()
    assert record_keys == set(accepted)  # every accepted record, nothing refused, no extra
    assert all(stored_bodies.values())
    assert all(SECRET_ZIP.encode() not in body for body in stored_bodies.values() if body)
    assert sampled and set(traces.values()) == {200}
    assert refused and not set(refused) & record_keys
    gc.collect()  # collect the library's abandoned pipeline under this test's filters


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
async def test_spooled_incident_records_are_linked_to_the_incident_on_replay(
        credit: CreditModel, own_redis: RedisServer, tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data", artifacts=str(credit.artifacts), traces=own_redis.url,
        keyring=credit.keyring, redis_key_prefix="wl", auth="off",
        sampling=SamplingSettings(rate=0.0),
        spool=SpoolSettings(dir=tmp_path / "spool", replay_interval_s=0.2, replay_batch=4))
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://w") as http:
            opened = await http.post("/v1/incidents", json={
                "id": "INC0099", "model": "credit", "title": "t", "severity": 2})
            assert opened.status_code == 201
            live = await http.post("/v1/predictions", json=record_from(credit.frame, 0, "live"))
            assert live.json()["reason"] == "incident"
            own_redis.stop()
            spooled = [f"sp-{i}" for i in range(1, 7)]
            for i, rid in enumerate(spooled, start=1):
                answer = (await http.post("/v1/predictions",
                                          json=record_from(credit.frame, i, rid))).json()
                assert (answer["spooled"], answer["reason"]) == (True, "incident")
            own_redis.start()
            await spool_replayed(http)
            for rid in spooled:
                trace = (await http.get(f"/v1/traces/{rid}")).json()
                assert trace["incidents"] == ["INC0099"], rid
            found = (await http.get("/v1/traces?incident=INC0099&limit=50")).json()["traces"]
            assert sorted(t["request_id"] for t in found) == sorted(["live", *spooled])
            view = (await http.get("/v1/incidents/INC0099")).json()
            assert view["summary"]["counts"]["attached"] == len(spooled) + 1
    client = redis.Redis.from_url(own_redis.url)
    try:
        # Linked means held: the replayed traces have no TTL while the incident is open.
        assert [client.pttl(f"wl:{{credit}}:t:{rid}") for rid in spooled] == [-1] * 6
    finally:
        client.close()
    gc.collect()
