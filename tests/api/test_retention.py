"""Per-model retention reaches the stores; expired raw inputs give a clear 410 problem."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pandas as pd
import pytest
import redis.asyncio

from service.settings import RetentionSettings, Settings
from storage.keyring import create_keyring_file
from storage.manifest import RetentionOverrides
from tests.api.conftest import record_from
from tests.api.security_support import as_role, keyed_client


async def test_inputs_past_retention_cannot_be_unmasked_or_explained(
        published_settings: Settings, credit_frame: pd.DataFrame, tmp_path: Path) -> None:
    retention = RetentionSettings(models={"credit": RetentionOverrides(inputs_s=1)})
    async with keyed_client(published_settings, tmp_path, retention=retention) as http:
        record = record_from(credit_frame, 1, "ret-1", context={"cohort": "canary"})
        assert (await http.post("/v1/predictions", json=record,
                                headers=as_role("ingest"))).json()["sampled"]
        fresh = await http.get("/v1/traces/ret-1?unmask=true", headers=as_role("audit"))
        assert fresh.status_code == 200
        await asyncio.sleep(1.2)
        gone = await http.get("/v1/traces/ret-1?unmask=true", headers=as_role("audit"))
        assert gone.status_code == 410
        assert gone.json()["type"].endswith("/inputs-expired")
        masked = await http.get("/v1/traces/ret-1", headers=as_role("read"))
        assert masked.status_code == 200
        explain = await http.post("/v1/explain", json={"request_id": "ret-1"},
                                  headers=as_role("read"))
        assert explain.status_code == 410
        audit = (await http.get("/v1/audit", headers=as_role("admin"))).json()["entries"]
        assert [(e["request_id"], e["status"]) for e in audit
                if e["action"] == "trace.unmask"] == [("ret-1", 410), ("ret-1", 200)]


@pytest.mark.integration
async def test_redis_keys_written_by_the_service_carry_the_model_retention(
        published_settings: Settings, credit_frame: pd.DataFrame, tmp_path: Path,
        redis_url: str, unique_prefix: str) -> None:
    keyring = tmp_path / "keyring.yaml"
    create_keyring_file(keyring)
    retention = RetentionSettings(models={"credit": RetentionOverrides(
        traces_s=600, records_s=900, inputs_s=300)})
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        async with keyed_client(published_settings, tmp_path, retention=retention,
                                traces=redis_url, redis_key_prefix=unique_prefix,
                                keyring=keyring) as http:
            record = record_from(credit_frame, 1, "ret-r", context={"cohort": "canary"})
            assert (await http.post("/v1/predictions", json=record,
                                    headers=as_role("ingest"))).status_code == 200
        head = f"{unique_prefix}:{{credit}}"
        assert 590_000 < await client.pttl(f"{head}:t:ret-r") <= 600_000
        assert 890_000 < await client.pttl(f"{head}:r:ret-r") <= 900_000
        assert 290_000 < await client.pttl(f"{head}:s:ret-r") <= 300_000
    finally:
        keys = [k async for k in client.scan_iter(match=f"{unique_prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
