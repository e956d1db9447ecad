"""Tampered artifacts are refused with a clear message; the last good version keeps serving.

With WHYLENS_TRUSTED_KEYS set, each of these is refused: one flipped byte in a model
file (digest mismatch), in a manifest (signature mismatch), in a signature, and an
unsigned version. Moving the production alias onto a refused version leaves production
answering with the version it served before.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import lightgbm as lgb
import pandas as pd
import pytest

from service.app import create_app
from service.cli import main as cli_main
from service.demo.credit_data import FEATURES_YAML
from service.publishing import PublishRequest, promote, publish_from_files
from service.settings import ExplainSettings, SamplingSettings, Settings
from storage.signing import generate_signing_key
from tests.api.conftest import LABEL, record_from

TAMPERED = {"2": "model.txt", "3": "manifest.json", "4": "manifest.sig"}
EXPECTED_REASON = {
    "2": "sha256 mismatch for models/credit/2/model.txt",
    "3": "signature refused for models/credit/3/manifest.json",
    "4": "signature refused for models/credit/4/manifest.json",
    "5": "unsigned (no manifest.sig) and trusted keys are configured",
}


def flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    # Inside the manifest's JSON text, the model's text and the signature's base64.
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
async def signed_settings(credit_frame: pd.DataFrame, credit_booster: tuple[lgb.Booster, Path],
                          tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("signed")
    keys = generate_signing_key()
    (root / "sign.pem").write_bytes(keys.private_pem)
    (root / "trusted.pem").write_bytes(keys.public_pem)
    train = root / "train.parquet"
    credit_frame.to_parquet(train)
    features = root / "FEATURES.yaml"
    features.write_text(FEATURES_YAML, encoding="utf-8")
    settings = Settings(data_dir=root / "data", auth="off",
                        sampling=SamplingSettings(rate=0.0, always_cohorts=["canary"]),
                        explain=ExplainSettings(alias_refresh_s=0.01))
    for version in ("1", "2", "3", "4", "5"):
        await publish_from_files(settings, PublishRequest(
            name="credit", version=version, model_path=credit_booster[1], train_path=train,
            label=LABEL, features_path=features,
            signing_key_path=None if version == "5" else root / "sign.pem"))
    await promote(settings, "credit", "1", "production")
    versions = root / "data" / "artifacts" / "models" / "credit"
    for version, name in TAMPERED.items():
        flip_one_byte(versions / version / name)
    return settings.model_copy(update={"trusted_keys": [root / "trusted.pem"]})


@pytest.fixture
async def signed_client(signed_settings: Settings,
                        tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = signed_settings.model_copy(update={"traces": f"sqlite:///{tmp_path}/t.db"})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://w") as http:
            yield http


@pytest.mark.parametrize("version", ["2", "3", "4", "5"])
async def test_a_tampered_or_unsigned_version_is_refused_and_production_keeps_serving(
        signed_client: httpx.AsyncClient, signed_settings: Settings,
        credit_frame: pd.DataFrame, version: str) -> None:
    before = await signed_client.post("/v1/predictions", json=record_from(
        credit_frame, 1, f"before-{version}", context={"cohort": "canary"}))
    assert before.status_code == 200 and before.json()["sampled"]

    explicit = await signed_client.post("/v1/predictions", json=record_from(
        credit_frame, 2, f"explicit-{version}", version=version))
    assert explicit.status_code == 503
    assert explicit.headers["content-type"] == "application/problem+json"
    assert EXPECTED_REASON[version] in explicit.json()["detail"]

    await promote(signed_settings, "credit", version, "production")
    try:
        after = await signed_client.post("/v1/predictions", json=record_from(
            credit_frame, 3, f"after-{version}", context={"cohort": "canary"}))
        assert after.status_code == 200, after.text
        trace = await signed_client.get(f"/v1/traces/after-{version}")
        assert trace.json()["model"]["version"] == "1"
        # Degraded, not unready: pulling every replica out would stop serving altogether.
        ready = await signed_client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        check = ready.json()["checks"]["model:credit"]
        assert EXPECTED_REASON[version] in check and "still serving 1" in check
    finally:
        await promote(signed_settings, "credit", "1", "production")


async def test_cli_publish_sign_is_trusted_only_under_its_own_key(
        credit_frame: pd.DataFrame, credit_booster: tuple[lgb.Booster, Path],
        tmp_path: Path) -> None:
    ours, theirs = generate_signing_key(), generate_signing_key()
    (tmp_path / "ours.pem").write_bytes(ours.private_pem)
    (tmp_path / "theirs.pem").write_bytes(theirs.private_pem)
    (tmp_path / "trusted.pem").write_bytes(ours.public_pem)
    credit_frame.to_parquet(tmp_path / "train.parquet")
    (tmp_path / "FEATURES.yaml").write_text(FEATURES_YAML, encoding="utf-8")
    artifacts = (tmp_path / "artifacts").as_uri()
    for version, key in (("1", "ours.pem"), ("2", "theirs.pem")):
        assert await asyncio.to_thread(cli_main, [
            "publish", "--name", "credit", "--version", version,
            "--model", str(credit_booster[1]), "--train", str(tmp_path / "train.parquet"),
            "--label", LABEL, "--features", str(tmp_path / "FEATURES.yaml"),
            "--artifacts", artifacts, "--sign", str(tmp_path / key)]) == 0
        assert (tmp_path / "artifacts/models/credit" / version / "manifest.sig").exists()
    assert await asyncio.to_thread(cli_main, [
        "promote", "credit", "1", "--alias", "production", "--artifacts", artifacts]) == 0
    settings = Settings(data_dir=tmp_path / "data", artifacts=artifacts, auth="off",
                        traces=f"sqlite:///{tmp_path / 't.db'}",
                        trusted_keys=[tmp_path / "trusted.pem"])
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://w") as http:
            trusted = await http.post("/v1/predictions", json=record_from(
                credit_frame, 1, "cli-signed-1", version="1"))
            foreign = await http.post("/v1/predictions", json=record_from(
                credit_frame, 2, "cli-signed-2", version="2"))
    assert trusted.status_code == 200, trusted.text
    assert foreign.status_code == 503
    assert "signature refused for models/credit/2/manifest.json" in foreign.json()["detail"]
