"""Drift endpoint, trace drift blocks, labels and drift gauges on the live app."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import lightgbm as lgb
import numpy as np
import orjson
import pandas as pd
import pytest
import redis.asyncio
from scipy import stats

from service.app import create_app
from service.demo.credit_data import make_applications
from service.settings import DriftSettings, Settings
from storage.keyring import create_keyring_file
from tests.api.conftest import LABEL, record_from

PROBLEM = "application/problem+json"
LIVE_ROWS = 600
EPSILON = 1e-4


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def shifted_frame() -> pd.DataFrame:
    """Live applications whose debt and utilisation moved up (make_applications' shift)."""
    return make_applications(LIVE_ROWS, seed=99, shift=1.5)


def _records(frame: pd.DataFrame, booster: lgb.Booster, prefix: str, *,
             now_s: float, **extra: Any) -> list[dict[str, Any]]:
    scores = booster.predict(frame.drop(columns=[LABEL]))
    records = []
    for i in range(len(frame)):
        record = record_from(frame, i, f"{prefix}-{i}",
                             prediction={"score": float(scores[i]), "threshold": 0.5},
                             timestamp=_iso(now_s - 3000 + 4.5 * i), **extra)
        records.append(record)
    return records


async def _ingest(client: httpx.AsyncClient, records: list[dict[str, Any]]) -> None:
    answer = await client.post("/v1/predictions", json={"records": records})
    assert answer.status_code == 200
    assert all(r["status"] == "accepted" for r in answer.json()["records"])


def _open_psi(edges: list[float], proportions: list[float], values: np.ndarray) -> float:
    """PSI from raw values, open-ended outer bins, empty bins at EPSILON."""
    inner = np.asarray(edges[1:-1])
    counts = np.bincount(np.searchsorted(inner, values, side="right"),
                         minlength=len(proportions)).astype(float)
    actual = np.maximum(counts / counts.sum(), EPSILON)
    expected = np.maximum(np.asarray(proportions), EPSILON)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


@pytest.fixture
async def shifted_client(client: httpx.AsyncClient, shifted_frame: pd.DataFrame,
                         credit_booster: tuple[lgb.Booster, Path]) -> httpx.AsyncClient:
    await _ingest(client, _records(shifted_frame, credit_booster[0], "live",
                                   now_s=time.time(), context={"region": "eu-west-1"}))
    return client


async def test_drift_endpoint_flags_the_shifted_features_only(
        shifted_client: httpx.AsyncClient, shifted_frame: pd.DataFrame,
        credit_frame: pd.DataFrame) -> None:
    answer = await shifted_client.get("/v1/models/credit/drift", params={"window": "1h"})
    assert answer.status_code == 200
    body = answer.json()
    assert (body["model"], body["version"], body["baseline"], body["segment"]) == (
        "credit", "1", "training", None)
    assert body["count"] == LIVE_ROWS
    features = body["features"]
    for name in ("debt_ratio", "utilization"):
        assert features[name]["status"] == "drift", features[name]
    for name in ("age", "loan_amount", "purpose", "home_ownership", "num_inquiries_6m"):
        assert features[name]["status"] == "ok", (name, features[name])
    assert set(body["drifting"]) >= {"debt_ratio", "utilization"}
    manifest = (await shifted_client.get("/v1/models/credit/versions/1")).json()["manifest"]
    for name in ("debt_ratio", "age", "utilization"):
        profile = manifest["baseline"]["features"][name]
        live = shifted_frame[name].to_numpy(float)
        assert features[name]["psi"] == pytest.approx(
            _open_psi(profile["edges"], profile["proportions"], live), rel=1e-6, abs=1e-9)
        train = credit_frame[name].to_numpy(float)
        direct = stats.wasserstein_distance(train, live) / train.std()
        assert features[name]["wasserstein_norm"] == pytest.approx(direct, rel=0.1, abs=0.02)
        assert features[name]["mean"] == pytest.approx(live.mean(), rel=1e-9)
        assert features[name]["std"] == pytest.approx(live.std(), rel=1e-6)
    delinquency = shifted_frame["months_since_last_delinquency"]
    assert features["months_since_last_delinquency"]["missing_rate"] == pytest.approx(
        delinquency.isna().mean())
    assert features["income"]["masked"] is True and "mean" not in features["income"]
    assert features["zip_code"]["masked"] is True
    assert body["prediction"]["count"] == LIVE_ROWS
    assert body["prediction"]["status"] in ("warn", "drift")


async def test_segments_previous_window_and_version_baselines(
        shifted_client: httpx.AsyncClient) -> None:
    region = (await shifted_client.get("/v1/models/credit/drift",
                                       params={"segment": "region:eu-west-1"})).json()
    assert region["segment"] == "region:eu-west-1"
    assert region["count"] == LIVE_ROWS
    other = (await shifted_client.get("/v1/models/credit/drift",
                                      params={"segment": "region:us-east-1"})).json()
    assert other["count"] == 0
    assert {e["status"] for e in other["features"].values()} == {"insufficient_data"}
    previous = (await shifted_client.get("/v1/models/credit/drift",
                                         params={"baseline": "previous_window"})).json()
    assert previous["baseline"] == "previous_window"
    assert previous["features"]["debt_ratio"]["reasons"] == ["baseline_sample_size"]
    canary = (await shifted_client.get("/v1/models/credit/drift",
                                       params={"baseline": "canary"})).json()
    assert canary["baseline"] == "2"
    assert canary["features"]["age"]["status"] == "insufficient_data"


async def test_window_until_in_the_past_sees_nothing(shifted_client: httpx.AsyncClient) -> None:
    body = (await shifted_client.get("/v1/models/credit/drift", params={
        "window": "30m", "until": _iso(time.time() - 7200)})).json()
    assert body["count"] == 0
    start = datetime.fromisoformat(body["window"]["start"])
    end = datetime.fromisoformat(body["window"]["end"])
    assert (end - start).total_seconds() == 1800


@pytest.mark.parametrize(("params", "field"), [
    ({"window": "1w"}, "window"), ({"window": "0h"}, "window"), ({"window": "30d"}, "window"),
    ({"until": "yesterday"}, "until"), ({"segment": "planet:mars"}, "segment"),
    ({"baseline": "nope"}, "baseline"),
])
async def test_bad_drift_parameters_are_422_problems(
        client: httpx.AsyncClient, params: dict[str, str], field: str) -> None:
    answer = await client.get("/v1/models/credit/drift", params=params)
    assert answer.status_code == 422
    assert answer.headers["content-type"] == PROBLEM
    assert [e["field"] for e in answer.json()["errors"]] == [field]


async def test_drift_of_unknown_model_or_version_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/models/nope/drift")).status_code == 404
    missing = await client.get("/v1/models/credit/drift", params={"version": "9"})
    assert missing.status_code == 404
    assert missing.headers["content-type"] == PROBLEM


async def test_trace_carries_the_drift_of_its_decision_window(
        shifted_client: httpx.AsyncClient, shifted_frame: pd.DataFrame,
        credit_frame: pd.DataFrame, credit_booster: tuple[lgb.Booster, Path]) -> None:
    record = _records(shifted_frame.iloc[[7]], credit_booster[0], "probe",
                      now_s=time.time() + 2000, context={"cohort": "canary"})[0]
    record["version"] = "1"
    await _ingest(shifted_client, [record])
    answer = await shifted_client.get("/v1/traces/probe-0")
    trace = answer.json()
    drift = trace["drift"]
    event = datetime.fromisoformat(trace["timestamp"])
    assert datetime.fromisoformat(drift["window"]["start"]) <= event < \
        datetime.fromisoformat(drift["window"]["end"])
    attributions = trace["explanation"]["attributions"]
    order = list(drift["features"])
    assert order == sorted(order, key=lambda f: -abs(attributions[f]))
    top = [t["feature"] for t in trace["explanation"]["top"]]
    assert drift["top_attributed_drifting"] == [
        f for f in top if drift["features"][f]["status"] == "drift"]
    assert drift["features"]["debt_ratio"]["status"] == "drift"
    value = shifted_frame["debt_ratio"].iloc[7]
    empirical = float(np.mean(credit_frame["debt_ratio"].to_numpy() < value))
    assert drift["features"]["debt_ratio"]["baseline_percentile"] == pytest.approx(
        empirical, abs=0.02)
    assert drift["features"]["income"]["baseline_percentile"] is None
    assert drift["features"]["zip_code"]["baseline_frequency"] is None
    assert drift["prediction"]["baseline_percentile"] is not None
    listed = (await shifted_client.get("/v1/traces", params={"model": "credit"})).json()
    stored = [t for t in listed["traces"] if t["request_id"] == "probe-0"]
    assert stored and "drift" not in stored[0]
    explained = (await shifted_client.post("/v1/explain", json={"request_id": "live-590"})).json()
    assert explained["drift"]["features"]["utilization"]["status"] == "drift"


def _ece(scores: np.ndarray, labels: np.ndarray) -> float:
    bins = np.minimum((scores * 10).astype(int), 9)
    total = 0.0
    for k in range(10):
        chosen = bins == k
        if chosen.any():
            total += chosen.sum() * abs(labels[chosen].mean() - scores[chosen].mean())
    return total / scores.size


async def test_labels_give_label_rate_and_calibration_per_window(
        shifted_client: httpx.AsyncClient, shifted_frame: pd.DataFrame,
        credit_frame: pd.DataFrame, credit_booster: tuple[lgb.Booster, Path]) -> None:
    truth = shifted_frame[LABEL].to_numpy()
    labels = [{"request_id": f"live-{i}", "label": int(truth[i])} for i in range(LIVE_ROWS)]
    answer = await shifted_client.post("/v1/labels", json={"labels": [
        *labels[:400], {"request_id": "never-sent", "label": 1},
        {"request_id": "live-1", "label": "maybe"}, {"request_id": "bad id!", "label": 1}]})
    assert answer.status_code == 200
    outcomes = answer.json()["labels"]
    assert [o["status"] for o in outcomes[:400]] == ["accepted"] * 400
    assert [o["status"] for o in outcomes[400:]] == ["rejected"] * 3
    assert outcomes[400]["errors"][0]["field"] == "labels[400].request_id"
    assert outcomes[401]["errors"][0]["field"] == "labels[401].label"
    again = (await shifted_client.post("/v1/labels", json={"labels": labels})).json()["labels"]
    assert [o.get("duplicate", False) for o in again] == [True] * 400 + [False] * 200
    body = (await shifted_client.get("/v1/models/credit/drift")).json()["labels"]
    scores = credit_booster[0].predict(shifted_frame.drop(columns=[LABEL]))
    assert body["count"] == LIVE_ROWS
    assert body["positive_rate"] == pytest.approx(truth.mean())
    assert body["baseline_positive_rate"] == pytest.approx(credit_frame[LABEL].mean())
    assert body["ece"] == pytest.approx(_ece(scores, truth), rel=1e-9)
    assert body["status"] in ("ok", "warn", "drift")


async def test_labels_body_is_checked(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/labels", json={"label": []})).status_code == 400
    empty = await client.post("/v1/labels", json={"labels": []})
    assert empty.status_code == 422 and empty.headers["content-type"] == PROBLEM


@pytest.fixture
async def gauge_app(published_settings: Settings, tmp_path: Path
                    ) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    settings = published_settings.model_copy(update={
        "traces": f"sqlite:///{tmp_path / 'traces.db'}",
        "drift": DriftSettings(gauge_refresh_s=0.05)})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://whylens") as http:
            yield http, app


async def _metrics_until(http: httpx.AsyncClient, wanted: str) -> str:
    for _ in range(600):  # a bound on polling (loaded CI), not a timing assertion
        text = (await http.get("/metrics")).text
        if wanted in text:
            return text
        await asyncio.sleep(0.05)
    raise AssertionError(f"{wanted} never appeared in /metrics")


async def test_metrics_expose_drift_gauges_refreshed_in_the_background(
        gauge_app: tuple[httpx.AsyncClient, Any], shifted_frame: pd.DataFrame,
        credit_booster: tuple[lgb.Booster, Path]) -> None:
    http, _ = gauge_app
    await _ingest(http, _records(shifted_frame, credit_booster[0], "g", now_s=time.time()))
    text = await _metrics_until(
        http, 'whylens_drift_level{feature="debt_ratio",model="credit",version="1"} 2.0')
    assert 'whylens_drift_window_records{model="credit",version="1"} 600.0' in text
    assert 'whylens_drift_level{feature="age",model="credit",version="1"} 0.0' in text
    # Canary (version 2) got no records: tracked, but insufficient.
    assert 'whylens_drift_level{feature="age",model="credit",version="2"} -1.0' in text


async def test_drift_counters_hold_nothing_that_gives_a_masked_value_back(
        shifted_client: httpx.AsyncClient, tmp_path: Path) -> None:
    manifest = (await shifted_client.get("/v1/models/credit/versions/1")).json()["manifest"]
    position = {f["name"]: str(i) for i, f in enumerate(manifest["features"])}
    psi_bins = {name: len(manifest["baseline"]["features"][name]["edges"]) - 1
                for name in ("income", "savings_balance")}
    # A window read makes the background drift writer count what is queued.
    assert (await shifted_client.get("/v1/models/credit/drift")).status_code == 200
    connection = sqlite3.connect(tmp_path / "traces.db")
    try:
        rows = connection.execute("SELECT counters FROM drift_buckets").fetchall()
    finally:
        connection.close()
    assert rows
    for (blob,) in rows:
        fields = set(orjson.loads(zlib.decompress(blob)))
        for name, bins in psi_bins.items():
            own = {f.split(":", 1)[1] for f in fields if f.split(":", 1)[0] == position[name]}
            assert own <= {*map(str, range(bins)), "lo", "hi", "m", "t"}, own
        zip_fields = {f.split(":", 1)[1] for f in fields
                      if f.split(":", 1)[0] == position["zip_code"]}
        assert zip_fields <= {"0", "1", "m", "t"}  # known / new / missing: no identity
        assert f"{position['debt_ratio']}:sum" in fields  # unmasked features keep moments


@pytest.mark.parametrize("until", ["0001-01-01T00:30:00Z", "9999-12-31T23:59:59Z"])
async def test_until_at_the_ends_of_the_calendar_is_a_422(client: httpx.AsyncClient,
                                                           until: str) -> None:
    answer = await client.get("/v1/models/credit/drift", params={"until": until})
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "until"


@pytest.fixture
async def redis_app(published_settings: Settings, tmp_path: Path, redis_url: str,
                    unique_prefix: str) -> AsyncIterator[httpx.AsyncClient]:
    keyring = tmp_path / "keyring.yaml"
    create_keyring_file(keyring)
    settings = published_settings.model_copy(update={
        "traces": redis_url, "redis_key_prefix": unique_prefix, "keyring": keyring})
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://whylens") as http:
                yield http
    finally:
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            keys = [k async for k in client.scan_iter(match=f"{unique_prefix}:*", count=1000)]
            for start in range(0, len(keys), 500):
                await client.delete(*keys[start: start + 500])
        finally:
            await client.aclose()


@pytest.mark.integration
async def test_windows_and_labels_aggregate_in_redis(
        redis_app: httpx.AsyncClient, shifted_frame: pd.DataFrame,
        credit_booster: tuple[lgb.Booster, Path]) -> None:
    records = _records(shifted_frame, credit_booster[0], "rd", now_s=time.time(),
                       context={"cohort": "beta"})
    await _ingest(redis_app, records[:300])
    await _ingest(redis_app, records[300:])
    await _ingest(redis_app, records[:50])  # re-sent: idempotent, not counted twice
    body = (await redis_app.get("/v1/models/credit/drift")).json()
    assert body["count"] == LIVE_ROWS
    assert body["features"]["debt_ratio"]["status"] == "drift"
    cohort = (await redis_app.get("/v1/models/credit/drift",
                                  params={"segment": "cohort:beta"})).json()
    assert cohort["count"] == LIVE_ROWS
    truth = shifted_frame[LABEL].to_numpy()
    labels = [{"request_id": f"rd-{i}", "label": int(truth[i])} for i in range(LIVE_ROWS)]
    answer = (await redis_app.post("/v1/labels", json={"labels": labels})).json()["labels"]
    assert all(o["status"] == "accepted" and "duplicate" not in o for o in answer)
    labelled = (await redis_app.get("/v1/models/credit/drift")).json()["labels"]
    assert labelled["count"] == LIVE_ROWS
    assert labelled["positive_rate"] == pytest.approx(truth.mean())


async def test_counts_queued_for_the_drift_writer_are_read_at_once_and_kept_at_shutdown(
        published_settings: Settings, shifted_frame: pd.DataFrame,
        credit_booster: tuple[lgb.Booster, Path], tmp_path: Path) -> None:
    # A delay far longer than the test: only a read (or shutdown) can make them count.
    settings = published_settings.model_copy(update={
        "traces": f"sqlite:///{tmp_path / 'traces.db'}",
        "drift": DriftSettings(write_delay_s=10)})
    records = _records(shifted_frame.iloc[:40], credit_booster[0], "queued",
                       now_s=time.time())
    for phase in ("read", "shutdown"):
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://w") as http:
                batch = records[:20] if phase == "read" else records[20:]
                await _ingest(http, [{**r, "version": "1"} for r in batch])
                if phase == "read":
                    body = (await http.get("/v1/models/credit/drift",
                                           params={"version": "1"})).json()
                    assert body["count"] == 20
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://w") as http:
            body = (await http.get("/v1/models/credit/drift", params={"version": "1"})).json()
    assert body["count"] == 40
