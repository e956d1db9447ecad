"""Fault: the object store fails and stalls while traces are archived; nothing is lost."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import boto3
import httpx
import orjson
import pytest
import redis

from service.app import create_app
from service.runtime import Runtime
from service.settings import ArchiveSettings, QueueSettings, SamplingSettings, Settings
from tests.integration.faulty_s3 import Fault, FaultyS3Proxy
from tests.integration.scale_out_support import (
    CreditModel,
    archive_all,
    clear_prefix,
    record_from,
)

pytestmark = pytest.mark.integration

# The archive's PUTs, in order: the first object meets a 500, a stalled answer (client
# timeout) and a 503 (boto3's own attempts are used up: the archiver backs off and
# retries), then a slow success; the second object one more 500.
FAULTS: dict[int, Fault] = {0: "error500", 1: "hang", 2: "slowdown503", 3: "slow", 4: "error500"}


class ArchivePutPlan:
    """Numbers the archive PUTs and injects `FAULTS` into them."""

    def __init__(self) -> None:
        self.puts = 0

    def __call__(self, method: str, path: str, _call: int) -> Fault | None:
        if method != "PUT" or not ("/traces/dt=" in path or "/records/dt=" in path):
            return None
        number, self.puts = self.puts, self.puts + 1
        return FAULTS.get(number)


async def test_archiving_through_failing_s3_loses_nothing_and_serves_old_traces(
        credit: CreditModel, redis_url: str, unique_prefix: str, s3_endpoint: str,
        tmp_path: Path) -> None:
    bucket = f"wl-{unique_prefix[-12:]}"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket=bucket)
    plan = ArchivePutPlan()
    with FaultyS3Proxy(s3_endpoint, plan) as proxy:
        settings = Settings(
            data_dir=tmp_path / "data", artifacts=str(credit.artifacts), traces=redis_url,
            keyring=credit.keyring, redis_key_prefix=unique_prefix, auth="off",
            s3_endpoint_url=proxy.url, sampling=SamplingSettings(rate=1.0),
            queue=QueueSettings(stats_interval_s=0.2),
            archive=ArchiveSettings(enabled=True, uri=f"s3://{bucket}/whylens", timeout_s=0.5,
                                    retry_base_s=0.05, retry_cap_s=0.2))
        app = create_app(settings)
        try:
            async with app.router.lifespan_context(app):
                runtime: Runtime = app.state.runtime
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://w") as http:
                    ids = [f"a-{i}" for i in range(40)]
                    for start in (0, 20):
                        batch = [record_from(credit.frame, i, ids[i])
                                 for i in range(start, start + 20)]
                        await http.post("/v1/predictions", json={"records": batch})
                        archiver = await archive_all(runtime)
                    live = {rid: (await http.get(f"/v1/traces/{rid}")).json() for rid in ids}
                    # Retention ends: the store forgets the traces, the archive still has them.
                    sync = redis.Redis.from_url(redis_url)
                    for rid in ids:
                        sync.delete(f"{unique_prefix}:{{credit}}:t:{rid}")
                    sync.close()
                    archived = {rid: await http.get(f"/v1/traces/{rid}") for rid in ids}
                    unknown = await http.get("/v1/traces/never-sent")
        finally:
            clear_prefix(redis_url, unique_prefix)
    assert proxy.faults == Counter({"error500": 2, "hang": 1, "slowdown503": 1, "slow": 1})
    assert archiver.metrics.archive_retries._value.get() >= 1
    lines: dict[str, Counter[str]] = {"traces": Counter(), "records": Counter()}
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    for key in keys:
        kind = key.split("/")[1]
        data = gzip.decompress(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        for line in data.splitlines():
            lines[kind][orjson.loads(line)["request_id"]] += 1
    assert lines["traces"] == Counter(dict.fromkeys(ids, 1))
    assert lines["records"] == Counter(dict.fromkeys(ids, 1))
    assert all(key.split("/")[2] == "dt=2026-11-25" for key in keys)
    for rid in ids:
        assert archived[rid].status_code == 200
        body = archived[rid].json()
        assert body["explanation"] == live[rid]["explanation"]
        assert body["features"] == live[rid]["features"]
    assert unknown.status_code == 404
