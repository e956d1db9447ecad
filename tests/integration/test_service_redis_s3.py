"""The service end to end on its production stores: models in S3, traces in Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import numpy as np
import pandas as pd
import pytest
import redis
import shap
import skops.io
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from service.app import create_app
from service.cli import main as cli_main
from service.settings import SamplingSettings, Settings
from storage.keyring import create_keyring_file

pytestmark = pytest.mark.integration

NUMERIC = ["income", "debt_ratio", "age", "utilization"]


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "income": rng.lognormal(10.8, 0.4, n), "debt_ratio": rng.uniform(0, 1.5, n),
        "age": rng.integers(18, 80, n).astype(float), "utilization": rng.beta(2, 5, n),
        "region": rng.choice(["north", "south", "east"], n),
    })
    logit = 2 * frame["debt_ratio"] - 1 + (frame["region"] == "south") * 0.8
    frame["label"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    name = f"wl-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, s3_endpoint: str, bucket: str, redis_url: str,
        unique_prefix: str, tmp_path: Path) -> dict[str, str]:
    keyring = tmp_path / "keyring.yaml"
    create_keyring_file(keyring)
    values = {"WHYLENS_ARTIFACTS": f"s3://{bucket}/whylens", "WHYLENS_S3_ENDPOINT_URL": s3_endpoint,
              "WHYLENS_TRACES": redis_url, "WHYLENS_KEYRING": str(keyring),
              "WHYLENS_REDIS_KEY_PREFIX": unique_prefix, "WHYLENS_AUTH": "off",
              "WHYLENS_DATA_DIR": str(tmp_path / "data")}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    yield values
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"{unique_prefix}*", count=1000):
        client.delete(key)
    client.close()


@pytest.fixture
async def client(env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(sampling=SamplingSettings(rate=1.0)))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://whylens") as http:
            yield http


async def _publish(tmp_path: Path, model: Any, frame: pd.DataFrame, name: str) -> None:
    """Publish through the real CLI (in a thread: it runs its own event loop)."""
    path = tmp_path / f"{name}.skops"
    skops.io.dump(model, path)
    train = tmp_path / f"{name}.csv"
    frame.to_csv(train, index=False)
    publish = ["publish", "--name", name, "--version", "1", "--model", str(path),
               "--train", str(train), "--label", "label"]
    assert await asyncio.to_thread(cli_main, publish) == 0
    assert await asyncio.to_thread(cli_main, ["promote", name, "1", "--alias", "production"]) == 0


def _record(frame: pd.DataFrame, i: int, model: str) -> dict[str, Any]:
    row = frame.drop(columns=["label"]).iloc[i]
    features = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
    return {"request_id": f"{model}-{i}", "model": model, "features": features,
            "prediction": {"score": 0.5}}


async def test_skops_tree_model_from_s3_explained_into_redis_matches_shap(
    env: dict[str, str], tmp_path: Path, client: httpx.AsyncClient,
) -> None:
    frame = _frame(1500, 1)
    numeric = frame[[*NUMERIC, "label"]]
    model = HistGradientBoostingClassifier(max_iter=30, random_state=0)
    model.fit(numeric[NUMERIC], numeric["label"])
    await _publish(tmp_path, model, numeric, "hgb")
    answer = await client.post("/v1/predictions", json={"records": [
        _record(numeric, i, "hgb") for i in range(5)]})
    assert all(r["sampled"] for r in answer.json()["records"])
    expected = shap.TreeExplainer(model).shap_values(numeric[NUMERIC].iloc[:5])
    for i in range(5):
        trace = (await client.get(f"/v1/traces/hgb-{i}")).json()
        ours = [trace["explanation"]["attributions"][n] for n in NUMERIC]
        np.testing.assert_allclose(ours, expected[i], atol=1e-6)
    page = (await client.get("/v1/traces", params={"model": "hgb", "limit": 3})).json()
    assert len(page["traces"]) == 3 and page["next_cursor"]


async def test_pipeline_from_s3_uses_exact_model_agnostic_shap(
    env: dict[str, str], tmp_path: Path, client: httpx.AsyncClient,
) -> None:
    frame = _frame(800, 2)
    pipeline = Pipeline([
        ("prep", ColumnTransformer([("num", StandardScaler(), NUMERIC),
                                    ("cat", OneHotEncoder(handle_unknown="ignore"),
                                     ["region"])])),
        ("clf", LogisticRegression(max_iter=500)),
    ]).fit(frame.drop(columns=["label"]), frame["label"])
    await _publish(tmp_path, pipeline, frame, "pipe")
    trace = (await client.post("/v1/explain", json=_record(frame, 3, "pipe"))).json()
    explanation = trace["explanation"]
    assert explanation["method"] == "exact_shap"
    total = explanation["base_value"] + sum(explanation["attributions"].values())
    probability = pipeline.predict_proba(frame.drop(columns=["label"]).iloc[[3]])[0, 1]
    assert total == pytest.approx(probability, rel=1e-6)
    assert trace["prediction"]["recomputed"]["score"] == pytest.approx(probability, abs=1e-12)


async def test_tampered_model_in_s3_is_refused_with_a_clear_problem(
    env: dict[str, str], tmp_path: Path, s3_endpoint: str, bucket: str,
) -> None:
    frame = _frame(600, 3)[[*NUMERIC, "label"]]
    await _publish(tmp_path, HistGradientBoostingClassifier(max_iter=5).fit(frame[NUMERIC],
                                                                     frame["label"]),
             frame, "tampered")
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    key = "whylens/models/tampered/1/background.parquet"
    data = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    data[len(data) // 2] ^= 0xFF
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(data))
    app = create_app(Settings())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://w") as http:
            answer = await http.post("/v1/predictions", json=_record(frame, 0, "tampered"))
            ready = await http.get("/readyz")
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"
    assert "sha256 mismatch" in answer.json()["detail"]
    assert "background.parquet" in answer.json()["detail"]
    assert ready.status_code == 503
