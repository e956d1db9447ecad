"""Where the keyring comes from: an environment secret, or a refusal on a shared store."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from pydantic import SecretStr

from service.app import create_app
from service.errors import StartupRefused
from service.settings import Settings
from storage.keyring import new_keyring_document
from tests.api.conftest import record_from
from tests.api.security_support import as_role, keyed_client


async def test_a_keyring_from_the_environment_secret_is_shared_by_replicas(
        published_settings: Settings, credit_frame: pd.DataFrame, tmp_path: Path) -> None:
    secret = SecretStr(new_keyring_document())
    traces = f"sqlite:///{tmp_path / 'shared.db'}"
    record = record_from(credit_frame, 5, "env-ring-1", context={"cohort": "canary"})
    for replica in ("one", "two"):
        (tmp_path / replica).mkdir()
    async with keyed_client(published_settings, tmp_path / "one", keyring_data=secret,
                            traces=traces, data_dir=tmp_path / "one" / "data",
                            artifacts=published_settings.artifacts_uri) as http:
        answer = await http.post("/v1/predictions", json=record, headers=as_role("ingest"))
        assert answer.status_code == 200 and answer.json()["sampled"]
    # Another replica (own data dir) opens what the first sealed: the same keys, and no
    # keyring file was generated in either data dir.
    async with keyed_client(published_settings, tmp_path / "two", keyring_data=secret,
                            traces=traces, data_dir=tmp_path / "two" / "data",
                            artifacts=published_settings.artifacts_uri) as http:
        unmasked = await http.get("/v1/traces/env-ring-1?unmask=true",
                                  headers=as_role("audit"))
    assert unmasked.status_code == 200, unmasked.text[:300]
    assert unmasked.json()["features"]["zip_code"] == record["features"]["zip_code"]
    assert not list(tmp_path.glob("*/data/keyring.yaml"))


async def test_a_shared_trace_store_without_a_keyring_refuses_to_start(
        published_settings: Settings, tmp_path: Path) -> None:
    settings = published_settings.model_copy(update={
        "traces": "redis://127.0.0.1:1/0", "keyring": None, "keyring_data": None,
        "data_dir": tmp_path / "data"})
    app = create_app(settings)
    with pytest.raises(StartupRefused, match="WHYLENS_KEYRING"):
        async with app.router.lifespan_context(app):
            pass
    assert not (tmp_path / "data" / "keyring.yaml").exists()
