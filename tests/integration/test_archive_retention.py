"""Archive retention: partitions past their model's retention are really deleted from the
object store (local folder, S3 over HTTP), incident holds keep theirs, and an archived
trace whose object was purged answers 404."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import boto3
import httpx
import pytest
import redis

from service.app import create_app
from service.archive_purge import purge_archive
from service.cli import main
from service.runtime import Runtime
from service.settings import ArchiveSettings, RetentionSettings, SamplingSettings, Settings
from service.worker.archive_purge_loop import LEASE_NAME, ArchivePurger
from storage.archive.layout import ArchiveLine, build_objects
from storage.archive.lease import RedisLease
from storage.artifacts.local import LocalArtifactStore
from tests.integration.scale_out_support import (
    CreditModel,
    archive_all,
    clear_prefix,
    record_from,
)

pytestmark = pytest.mark.integration

DAY_S = 86400


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


@dataclass(slots=True)
class Archive:
    """Where the archive lives and how to list it independently of the service."""

    uri: str
    list_keys: Callable[[], list[str]]


@pytest.fixture(params=["local", "s3"])
def archive(request: pytest.FixtureRequest, tmp_path: Path, unique_prefix: str) -> Archive:
    if request.param == "local":
        root = tmp_path / "archive"

        def walk() -> list[str]:
            return sorted(str(Path(d, f).relative_to(root)) for d, _, files in os.walk(root)
                          for f in files)
        return Archive(root.as_uri(), walk)
    endpoint: str = request.getfixturevalue("s3_endpoint")
    s3 = boto3.client("s3", endpoint_url=endpoint)
    bucket = f"wl-{unique_prefix[-12:]}"
    s3.create_bucket(Bucket=bucket)

    def listing() -> list[str]:
        keys = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys.extend(o["Key"].removeprefix("arch/") for o in page.get("Contents", ()))
        return sorted(keys)
    return Archive(f"s3://{bucket}/arch", listing)


@pytest.fixture
async def service(credit: CreditModel, redis_url: str, unique_prefix: str, tmp_path: Path,
                  archive: Archive, request: pytest.FixtureRequest,
                  ) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    endpoint = request.getfixturevalue("s3_endpoint") if archive.uri.startswith("s3") else None
    settings = Settings(
        data_dir=tmp_path / "data", artifacts=str(credit.artifacts), traces=redis_url,
        keyring=credit.keyring, redis_key_prefix=unique_prefix, auth="off",
        s3_endpoint_url=endpoint, sampling=SamplingSettings(rate=1.0),
        retention=RetentionSettings(archive_traces_s=2 * DAY_S, archive_records_s=2 * DAY_S,
                                    incident_traces_s=1),
        archive=ArchiveSettings(enabled=True, uri=archive.uri))
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://w") as http:
                yield app.state.runtime, http
    finally:
        clear_prefix(redis_url, unique_prefix)


def _days(keys: list[str]) -> set[tuple[str, str]]:
    return {(k.split("/")[0], k.split("/")[1]) for k in keys}


async def test_purge_deletes_expired_partitions_keeps_held_ones_and_old_ids_answer_404(
        service: tuple[Runtime, httpx.AsyncClient], credit: CreditModel, archive: Archive,
        redis_url: str, unique_prefix: str) -> None:
    runtime, http = service
    days = {"old": "2026-11-20", "held": "2026-11-21", "new": "2026-11-25"}
    ids = {name: [f"{name}-{i}" for i in range(6)] for name in days}
    records = [record_from(credit.frame, i, rid, timestamp=f"{days[name]}T12:00:00Z")
               for name in days for i, rid in enumerate(ids[name])]
    answer = await http.post("/v1/predictions", json={"records": records})
    assert all(r["status"] == "accepted" for r in answer.json()["records"])
    opened = await http.post("/v1/incidents", json={"model": "credit", "title": "t",
                                                    "severity": 2, "explain_all": False})
    incident = opened.json()["id"]
    await http.post(f"/v1/incidents/{incident}/traces", json={"request_ids": ids["held"][:2]})
    await archive_all(runtime)
    scale_out = runtime.scale_out
    assert scale_out is not None and scale_out.archive_store is not None
    store = scale_out.archive_store
    before = archive.list_keys()
    assert _days(before) == {(kind, f"dt={day}") for kind in ("traces", "records")
                             for day in days.values()}

    # Index entries expire when their partition is due: end of day + 2 days.
    sync = redis.Redis.from_url(redis_url)
    assert sync.pexpiretime(f"{unique_prefix}:ax:new-0") == _ms("2026-11-28T00:00:00")
    assert sync.exists(f"{unique_prefix}:ax:old-0") == 0  # already past retention

    # Only the lease holder purges.
    assert scale_out.redis is not None
    lease = RedisLease(scale_out.redis, key_prefix=unique_prefix, name=LEASE_NAME,
                       ttl_ms=60_000)
    purger = ArchivePurger(runtime, store, RedisLease(
        scale_out.redis, key_prefix=unique_prefix, name=LEASE_NAME, ttl_ms=60_000),
        scale_out.metrics, interval_s=3600)
    assert await lease.acquire()
    assert await purger.run_once() is None
    assert archive.list_keys() == before
    await lease.release()

    report = await purger.run_once()
    assert report is not None and [v.partition.prefix for v in report.held] == [
        "traces/dt=2026-11-21/model=credit/"]
    after = archive.list_keys()
    assert _days(after) == {("traces", "dt=2026-11-21"), ("traces", "dt=2026-11-25"),
                            ("records", "dt=2026-11-25")}
    assert set(after) == {k for k in before if "/dt=2026-11-25/" in k
                          or k.startswith("traces/dt=2026-11-21/")}
    assert scale_out.metrics.archive_purged.labels("traces")._value.get() == 1

    # Closed with a 1 s incident retention: once that has passed the hold ends.
    assert (await http.post(f"/v1/incidents/{incident}/close")).status_code == 200
    now = int(datetime.now(UTC).timestamp() * 1000)
    await purge_archive(runtime, store, now_ms=now + 5_000)
    assert _days(archive.list_keys()) == {("traces", "dt=2026-11-25"),
                                          ("records", "dt=2026-11-25")}

    # The store forgets the new traces; the archive serves them until it is purged.
    for rid in ids["new"]:
        sync.delete(f"{unique_prefix}:{{credit}}:t:{rid}")
    assert (await http.get("/v1/traces/new-0")).status_code == 200
    await purge_archive(runtime, store, now_ms=_ms("2027-06-01T00:00:00"))
    assert archive.list_keys() == []
    gone = await http.get("/v1/traces/new-0")
    assert gone.status_code == 404
    assert gone.headers["content-type"].startswith("application/problem+json")
    assert sync.exists(f"{unique_prefix}:ax:new-0") == 0  # the dangling entry was removed
    assert sync.exists(f"{unique_prefix}:ax:new-1") == 1  # harmless until read or expiry
    assert (await http.get("/v1/traces/new-1")).status_code == 404
    sync.close()


def test_cli_purge_dry_run_lists_and_then_deletes(
        credit: CreditModel, redis_url: str, unique_prefix: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "archive"
    lines = [ArchiveLine(kind, f"{kind}-{day}", "credit", _ms(f"{day}T08:00:00"), b"{}")
             for kind in ("traces", "records") for day in ("2025-01-01", "2026-11-25")]
    objects = build_objects(lines, batch="B")
    store = LocalArtifactStore(root)

    async def write() -> None:
        for obj in objects:
            await store.write(obj.key, obj.data)
    asyncio.run(write())
    for name, value in {"TRACES": redis_url, "REDIS_KEY_PREFIX": unique_prefix, "AUTH": "off",
                        "ARTIFACTS": str(credit.artifacts), "KEYRING": str(credit.keyring),
                        "DATA_DIR": str(tmp_path / "data"), "ARCHIVE__ENABLED": "true",
                        "ARCHIVE__URI": root.as_uri()}.items():
        monkeypatch.setenv(f"WHYLENS_{name}", value)
    try:
        assert main(["archive", "purge", "--dry-run"]) == 0
        dry = capsys.readouterr().out
        assert len(list(root.rglob("*.jsonl.gz"))) == 4
        assert main(["archive", "purge"]) == 0
        real = capsys.readouterr().out
    finally:
        clear_prefix(redis_url, unique_prefix)
    for kind in ("traces", "records"):
        assert f"would delete {root.as_uri()}/{kind}/dt=2025-01-01/model=credit/" in dry
        assert f"deleted {root.as_uri()}/{kind}/dt=2025-01-01/model=credit/" in real
    assert "2026-11-25" not in dry + real
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jsonl.gz")) == [
        "records/dt=2026-11-25/model=credit/B.jsonl.gz",
        "traces/dt=2026-11-25/model=credit/B.jsonl.gz"]
    assert not (root / "traces" / "dt=2025-01-01").exists()
