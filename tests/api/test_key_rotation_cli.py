"""`whylens keys` end to end: rotate, re-encrypt, retire, with the service in between."""

from __future__ import annotations

import asyncio
import base64
import secrets
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml
from pydantic import SecretStr

from service.app import create_app
from service.cli import main as cli_main
from service.settings import Settings
from storage.keyring import create_keyring_file
from tests.api.conftest import record_from


async def ingest_and_explain(settings: Settings, frame: pd.DataFrame, new: list[str],
                             explained: list[str]) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://w") as http:
            if new:
                batch = {"records": [record_from(frame, i, r) for i, r in enumerate(new)]}
                assert (await http.post("/v1/predictions", json=batch)).status_code == 200
            for request_id in explained:
                # Explaining a logged record opens its sealed inputs.
                response = await http.post("/v1/explain", json={"request_id": request_id})
                assert response.status_code == 200, response.text[:300]
                unmasked = await http.get(f"/v1/traces/{request_id}?unmask=true")
                assert unmasked.status_code == 200, unmasked.text[:300]


async def whylens(argv: list[str]) -> int:
    """Run the CLI in a thread: it starts its own event loop."""
    return await asyncio.to_thread(cli_main, argv)


def aead_statuses(path: Path) -> dict[str, str]:
    keys = yaml.safe_load(path.read_text())["keys"]
    return {k["id"]: k["status"] for k in keys if k["kind"] == "aead"}


async def test_rotate_reencrypt_retire_through_the_cli(
        published_settings: Settings, credit_frame: pd.DataFrame, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    keyring = tmp_path / "keyring.yaml"
    create_keyring_file(keyring)
    traces = f"sqlite:///{tmp_path / 'traces.db'}"
    settings = published_settings.model_copy(update={"keyring": keyring, "traces": traces})
    for name, value in {"WHYLENS_KEYRING": str(keyring), "WHYLENS_TRACES": traces,
                        "WHYLENS_DATA_DIR": str(tmp_path), "WHYLENS_AUTH": "off"}.items():
        monkeypatch.setenv(name, value)
    [key1] = aead_statuses(keyring)
    hmac_before = yaml.safe_load(keyring.read_text())["keys"][1]

    old = [f"old-{i}" for i in range(15)]
    await ingest_and_explain(settings, credit_frame, old, [])
    assert await whylens(["keys", "rotate"]) == 0
    statuses = aead_statuses(keyring)
    [key2] = [k for k, s in statuses.items() if s == "active"]
    assert statuses[key1] == "decrypt"
    assert yaml.safe_load(keyring.read_text())["keys"][1] == hmac_before
    assert keyring.stat().st_mode & 0o777 == 0o600

    new = [f"new-{i}" for i in range(15)]
    await ingest_and_explain(settings, credit_frame, new, [old[0], new[0]])

    capsys.readouterr()
    assert await whylens(["keys", "retire", key1]) == 1
    assert "whylens keys reencrypt" in capsys.readouterr().err
    assert await whylens(["keys", "reencrypt", "--batch", "7"]) == 0
    assert "re-encrypted 15, unreadable 0" in capsys.readouterr().out
    assert await whylens(["keys", "retire", key1]) == 0
    assert aead_statuses(keyring) == {key1: "retired", key2: "active"}
    assert await whylens(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert key1 in listing and "secret" not in listing
    assert hmac_before["secret"] not in listing

    await ingest_and_explain(settings, credit_frame, [], old + new)

    # Envelope mode: wrap every key under a master key; the service needs it to start.
    master = base64.b64encode(secrets.token_bytes(32)).decode()
    monkeypatch.setenv("WHYLENS_KEYRING_MASTER_KEY", master)
    assert await whylens(["keys", "wrap"]) == 0
    assert "secret:" not in keyring.read_text() and "wrapped:" in keyring.read_text()
    wrapped = settings.model_copy(update={"keyring_master_key": SecretStr(master)})
    await ingest_and_explain(wrapped, credit_frame, [], old[:2] + new[:2])
    assert await whylens(["keys", "unwrap"]) == 0
    assert "wrapped:" not in keyring.read_text()
    assert aead_statuses(keyring) == {key1: "retired", key2: "active"}
