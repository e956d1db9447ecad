from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

from service.app import create_app
from service.cli import main as cli_main
from service.errors import StartupRefused
from service.settings import Settings
from tests.api.conftest import record_from

KEYS = {"ingester": ("k-ingest", ["ingest"]), "reader": ("k-read", ["read"]),
        "boss": ("k-admin", ["admin"])}


def test_serve_refuses_to_start_without_auth_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    for name in ("WHYLENS_AUTH", "WHYLENS_API_KEYS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WHYLENS_DATA_DIR", str(tmp_path))
    assert cli_main(["serve", "--port", "1"]) == 1
    err = capsys.readouterr().err
    assert "WHYLENS_API_KEYS" in err and "WHYLENS_AUTH=off" in err


@pytest.fixture
async def keyed_client(published_settings: Settings,
                       tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text(yaml.safe_dump([
        {"name": name, "sha256": hashlib.sha256(key.encode()).hexdigest(), "roles": roles}
        for name, (key, roles) in KEYS.items()]), encoding="utf-8")
    settings = published_settings.model_copy(update={
        "auth": None, "api_keys": keys_file, "traces": f"sqlite:///{tmp_path / 't.db'}"})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://w") as http:
            yield http


async def test_keys_and_roles_gate_the_endpoints(keyed_client: httpx.AsyncClient,
                                                 credit_frame: pd.DataFrame) -> None:
    record = record_from(credit_frame, 1, "auth-1", context={"cohort": "canary"})
    no_key = await keyed_client.post("/v1/predictions", json=record)
    bad_key = await keyed_client.get("/v1/traces/auth-1", headers={"X-API-Key": "nope"})
    reader_ingests = await keyed_client.post(
        "/v1/predictions", json=record, headers={"Authorization": "Bearer k-read"})
    ingested = await keyed_client.post(
        "/v1/predictions", json=record, headers={"Authorization": "Bearer k-ingest"})
    read = await keyed_client.get("/v1/traces/auth-1", headers={"X-API-Key": "k-read"})
    admin_reads = await keyed_client.get("/v1/traces/auth-1", headers={"X-API-Key": "k-admin"})
    health = await keyed_client.get("/healthz")
    assert [r.status_code for r in (no_key, bad_key, reader_ingests)] == [401, 401, 403]
    assert all(r.headers["content-type"] == "application/problem+json"
               for r in (no_key, bad_key, reader_ingests))
    assert [r.status_code for r in (ingested, read, admin_reads, health)] == [200] * 4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_demo_trains_publishes_serves_and_prints_trace_urls(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHYLENS_")}
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "demo", "--no-serve", "--records", "400",
         "--port", str(port)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "replayed 400 records" in done.stdout
    assert f"curl -s http://127.0.0.1:{port}/v1/traces/demo-" in done.stdout
    for page in ("/ui/ ", "/ui/models/credit", "/ui/traces/demo-", "/ui/incidents/<id>"):
        assert f"http://127.0.0.1:{port}{page}" in done.stdout, page
    models = tmp_path / ".whylens" / "artifacts" / "models" / "credit"
    aliases = json.loads((models / "aliases.json").read_text(encoding="utf-8"))["aliases"]
    assert aliases == {"production": "1", "canary": "2"}
    manifest = json.loads((models / "1" / "manifest.json").read_text(encoding="utf-8"))
    masks = {f["name"]: f["mask"] for f in manifest["features"]}
    assert (manifest["flavor"], manifest["task"]) == ("lightgbm", "binary")
    assert len(masks) >= 15 and masks["zip_code"] == "hash" and masks["income"] == "bucket"


async def test_auth_off_is_explicit_and_announced_loudly_at_start(
        published_settings: Settings, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    settings = published_settings.model_copy(update={
        "auth": "off", "api_keys": None, "traces": f"sqlite:///{tmp_path / 't.db'}"})
    app = create_app(settings)
    with caplog.at_level(logging.WARNING, logger="service"):
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://w") as http:
                # Every caller, even without a key, is an admin now.
                assert (await http.get("/v1/audit")).status_code == 200
    loud = [r for r in caplog.records if "AUTHENTICATION IS OFF" in r.getMessage()]
    assert len(loud) == 1 and loud[0].levelno == logging.WARNING
    # Neither keys nor an explicit "off": the service does not start.
    unset = settings.model_copy(update={"auth": None})
    refused = create_app(unset)
    with pytest.raises(StartupRefused, match="WHYLENS_AUTH=off"):
        async with refused.router.lifespan_context(refused):
            pass
