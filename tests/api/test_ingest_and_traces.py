from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import httpx
import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from tests.api.conftest import LABEL, record_from

PROBLEM = "application/problem+json"


def _peer_contrib(booster: lgb.Booster, frame: pd.DataFrame, i: int) -> np.ndarray:
    """LightGBM's own TreeSHAP on the original pandas row (categoricals as dtype)."""
    return booster.predict(frame.drop(columns=[LABEL]).iloc[[i]], pred_contrib=True)[0]


async def test_canary_record_is_explained_and_matches_lightgbm(
    client: httpx.AsyncClient, credit_frame: pd.DataFrame,
    credit_booster: tuple[lgb.Booster, Path],
) -> None:
    record = record_from(credit_frame, 3, "canary-1", context={"cohort": "canary"},
                         version="canary")
    answer = await client.post("/v1/predictions", json=record)
    assert answer.status_code == 200
    assert answer.json() == {"request_id": "canary-1", "status": "accepted", "sampled": True,
                             "reason": "canary", "trace_url": "/v1/traces/canary-1"}
    trace = (await client.get("/v1/traces/canary-1")).json()
    assert trace["model"]["version"] == "2"
    explanation = trace["explanation"]
    assert explanation["method"] == "tree_shap"
    assert explanation["output_space"] == "log_odds"
    names = list(credit_frame.drop(columns=[LABEL]).columns)
    peer = _peer_contrib(credit_booster[0], credit_frame, 3)
    ours = np.array([explanation["attributions"][n] for n in names])
    np.testing.assert_allclose(ours, peer[:-1], atol=1e-9)
    assert explanation["base_value"] == pytest.approx(peer[-1], abs=1e-9)
    total = explanation["base_value"] + ours.sum()
    margin = credit_booster[0].predict(credit_frame.drop(columns=[LABEL]).iloc[[3]],
                                       raw_score=True)[0]
    assert total == pytest.approx(margin, rel=1e-6)
    top = explanation["top"]
    assert [t["feature"] for t in top] == sorted(
        names, key=lambda n: -abs(explanation["attributions"][n]))[: len(top)]


async def test_recomputed_prediction_and_mismatch_flag(
    client: httpx.AsyncClient, credit_frame: pd.DataFrame,
    credit_booster: tuple[lgb.Booster, Path],
) -> None:
    booster = credit_booster[0]
    true_score = float(booster.predict(credit_frame.drop(columns=[LABEL]).iloc[[5]])[0])
    good = record_from(credit_frame, 5, "match-1", context={"cohort": "canary"},
                       prediction={"score": true_score, "threshold": 0.5})
    skewed = record_from(credit_frame, 5, "skew-1", context={"cohort": "canary"},
                         prediction={"score": min(1.0, true_score + 0.2), "threshold": 0.5})
    await client.post("/v1/predictions", json={"records": [good, skewed]})
    matched = (await client.get("/v1/traces/match-1")).json()["prediction"]
    mismatched = (await client.get("/v1/traces/skew-1")).json()["prediction"]
    assert matched["recomputed"]["score"] == pytest.approx(true_score, abs=1e-12)
    assert matched["recomputed"]["label"] == int(true_score >= 0.5)
    assert matched["mismatch"] is False
    assert mismatched["mismatch"] is True


async def test_masked_values_never_leave_raw(
    client: httpx.AsyncClient, credit_frame: pd.DataFrame, published_settings: object,
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    record = record_from(credit_frame, 7, "mask-1", context={"cohort": "canary"})
    record["features"]["zip_code"] = "99999"
    record["features"]["income"] = 123457.0
    responses = [await client.post("/v1/predictions", json=record),
                 await client.get("/v1/traces/mask-1"),
                 await client.post("/v1/explain", json={"request_id": "mask-1"}),
                 await client.get("/v1/traces?model=credit")]
    trace = responses[1].json()
    assert trace["features"]["zip_code"].startswith("h:")
    assert "–" in trace["features"]["income"] or trace["features"]["income"].startswith(">")
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("traces.db*"))
    for raw in ("99999", "123457"):
        assert all(raw not in r.text for r in responses)
        assert raw.encode() not in stored
        assert raw not in caplog.text


async def test_resending_a_request_id_is_idempotent(
    client: httpx.AsyncClient, credit_frame: pd.DataFrame,
) -> None:
    first = record_from(credit_frame, 1, "idem-1", context={"cohort": "canary"})
    again = record_from(credit_frame, 2, "idem-1")
    one = (await client.post("/v1/predictions", json=first)).json()
    two = (await client.post("/v1/predictions", json=again)).json()
    assert (two["sampled"], two["reason"], two.get("duplicate")) == (True, "canary", True)
    assert one["reason"] == "canary"
    trace = (await client.get("/v1/traces/idem-1")).json()
    assert trace["features"]["age"] == first["features"]["age"]


async def test_a_request_id_repeated_in_one_batch_is_explained_from_its_first_copy(
    client: httpx.AsyncClient, credit_frame: pd.DataFrame,
    credit_booster: tuple[lgb.Booster, Path],
) -> None:
    # Sampled records are explained while they are logged; the repeat must not win.
    ages = credit_frame["age"].to_numpy()
    i, j = next((a, b) for a in range(50) for b in range(a + 1, 50) if ages[a] != ages[b])
    first = record_from(credit_frame, i, "twice-1", context={"cohort": "canary"})
    again = record_from(credit_frame, j, "twice-1", context={"cohort": "canary"})
    answer = (await client.post("/v1/predictions", json={"records": [first, again]})).json()
    assert [r.get("duplicate", False) for r in answer["records"]] == [False, True]
    trace = (await client.get("/v1/traces/twice-1")).json()
    assert trace["features"]["age"] == first["features"]["age"]
    names = list(credit_frame.drop(columns=[LABEL]).columns)
    ours = np.array([trace["explanation"]["attributions"][n] for n in names])
    np.testing.assert_allclose(ours, _peer_contrib(credit_booster[0], credit_frame, i)[:-1],
                               atol=1e-9)


async def test_batch_judges_each_record_and_names_fields(
    client: httpx.AsyncClient, credit_frame: pd.DataFrame,
) -> None:
    good = record_from(credit_frame, 1, "batch-ok")
    missing = record_from(credit_frame, 2, "batch-missing")
    del missing["features"]["age"]
    wrong_type = record_from(credit_frame, 3, "batch-type")
    wrong_type["features"]["debt_ratio"] = "high"
    unknown_model = record_from(credit_frame, 4, "batch-model", model="nope")
    answer = await client.post("/v1/predictions",
                               json={"records": [good, missing, wrong_type, unknown_model]})
    assert answer.status_code == 200
    records = answer.json()["records"]
    assert [r["status"] for r in records] == ["accepted", "rejected", "rejected", "rejected"]
    assert records[1]["errors"][0]["field"] == "records[1].features.age"
    assert records[2]["errors"][0]["field"] == "records[2].features.debt_ratio"
    assert records[3]["errors"][0]["field"] == "records[3].model"
    explained = await client.post("/v1/explain", json={"request_id": "batch-ok"})
    assert explained.status_code == 200
    missing_trace = await client.post("/v1/explain", json={"request_id": "batch-missing"})
    assert missing_trace.status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [(b"{not json", 400, None), (b"[1, 2]", 400, None), (b'{"records": 3}', 400, None)],
)
async def test_malformed_bodies_are_400_problems(client: httpx.AsyncClient, body: bytes,
                                                 status: int, field: str | None) -> None:
    answer = await client.post("/v1/predictions", content=body,
                               headers={"content-type": "application/json"})
    assert answer.status_code == status
    assert answer.headers["content-type"] == PROBLEM
    assert answer.json()["status"] == status


async def test_single_invalid_record_is_422_naming_fields(
    client: httpx.AsyncClient, credit_frame: pd.DataFrame,
) -> None:
    record = record_from(credit_frame, 1, "bad-1")
    record["features"]["age"] = "forty"
    record["features"]["shoe_size"] = 44
    answer = await client.post("/v1/predictions", json=record)
    assert answer.status_code == 422
    assert answer.headers["content-type"] == PROBLEM
    fields = {e["field"] for e in answer.json()["errors"]}
    assert fields == {"features.age", "features.shoe_size"}


async def test_unknown_model_and_version_are_404_problems(
    client: httpx.AsyncClient, credit_frame: pd.DataFrame,
) -> None:
    unknown_model = await client.post("/v1/predictions",
                                      json=record_from(credit_frame, 1, "m-1", model="nope"))
    unknown_version = await client.post("/v1/predictions",
                                        json=record_from(credit_frame, 1, "m-2", version="9"))
    assert (unknown_model.status_code, unknown_version.status_code) == (404, 404)
    assert unknown_model.json()["type"].endswith("model-not-found")
    assert unknown_version.json()["type"].endswith("version-not-found")


async def test_oversize_batch_is_refused_whole(client: httpx.AsyncClient,
                                               credit_frame: pd.DataFrame) -> None:
    record = record_from(credit_frame, 1, "x")
    answer = await client.post("/v1/predictions", json={"records": [record] * 1001})
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "records"
    assert (await client.get("/v1/traces/x")).status_code == 404


async def test_explain_full_record_logs_it_and_returns_the_trace(
    client: httpx.AsyncClient, credit_frame: pd.DataFrame,
    credit_booster: tuple[lgb.Booster, Path],
) -> None:
    record = record_from(credit_frame, 11, "full-1")
    answer = await client.post("/v1/explain", json=record)
    assert answer.status_code == 200
    trace = answer.json()
    peer = _peer_contrib(credit_booster[0], credit_frame, 11)
    assert trace["explanation"]["base_value"] == pytest.approx(peer[-1], abs=1e-9)
    again = await client.post("/v1/explain", json={"request_id": "full-1"})
    assert again.json()["explanation"]["attributions"] == trace["explanation"]["attributions"]
    assert (await client.get("/v1/traces/full-1")).status_code == 200


async def test_unknown_trace_is_404_problem(client: httpx.AsyncClient) -> None:
    answer = await client.get("/v1/traces/never-seen")
    assert answer.status_code == 404
    assert answer.headers["content-type"] == PROBLEM
    assert answer.json()["type"].endswith("trace-not-found")


async def test_search_filters_and_paginates_newest_first(
    client: httpx.AsyncClient, credit_frame: pd.DataFrame,
) -> None:
    records = [
        record_from(credit_frame, i, f"s-{i:03d}", context={"cohort": "canary"},
                    timestamp=f"2026-11-25T10:{i:02d}:00Z")
        for i in range(30)
    ]
    await client.post("/v1/predictions", json={"records": records})
    seen: list[str] = []
    cursor = None
    while True:
        params = {"model": "credit", "reason": "canary", "limit": 7,
                  "since": "2026-11-25T10:00:00Z", "until": "2026-11-25T11:00:00Z"}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/v1/traces", params=params)).json()
        seen += [t["request_id"] for t in page["traces"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"s-{i:03d}" for i in reversed(range(30))]
    bad = await client.get("/v1/traces", params={"version": "1"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "version"


async def test_models_endpoints_list_versions_aliases_and_manifest(
    client: httpx.AsyncClient,
) -> None:
    models = (await client.get("/v1/models")).json()["models"]
    assert models == [{"name": "credit", "versions": ["1", "2"],
                       "aliases": {"production": "1", "canary": "2"}}]
    version = (await client.get("/v1/models/credit/versions/canary")).json()
    assert version["manifest"]["version"] == "2"
    assert version["aliases"] == ["canary"]
    zip_feature = next(f for f in version["manifest"]["features"] if f["name"] == "zip_code")
    assert zip_feature["mask"] == "hash"
    assert (await client.get("/v1/models/none")).status_code == 404


async def test_health_ready_and_metrics(client: httpx.AsyncClient,
                                        credit_frame: pd.DataFrame) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["model:credit"] == "ok"
    await client.post("/v1/predictions", json=record_from(credit_frame, 1, "metric-1"))
    text = (await client.get("/metrics")).text
    assert 'whylens_records_total{model="credit",status="accepted"} 1.0' in text


async def test_metrics_count_sampling_reasons_and_time_explanations_by_method(
        client: httpx.AsyncClient, credit_frame: pd.DataFrame) -> None:
    records = [record_from(credit_frame, i, f"rate-{i}",
                           **({"context": {"cohort": "canary"}} if i % 4 == 0 else {}))
               for i in range(40)]
    answers = (await client.post("/v1/predictions", json={"records": records})).json()["records"]
    reasons = Counter(a["reason"] if a["sampled"] else "not_sampled" for a in answers)
    assert len(reasons) >= 2  # both the cohort rule and the rate decided something
    sampled = [a["request_id"] for a in answers if a["sampled"]]
    traces = [(await client.get(f"/v1/traces/{rid}")).json() for rid in sampled]
    methods = Counter(t["explanation"]["method"] for t in traces)
    text = (await client.get("/metrics")).text

    def sample(name: str, **labels: str) -> float:
        for match in re.finditer(rf"^{name}\{{(.*)\}} (\S+)$", text, flags=re.MULTILINE):
            if dict(re.findall(r'(\w+)="([^"]*)"', match.group(1))) == labels:
                return float(match.group(2))
        raise AssertionError(f"{name}{labels} is not exported")

    assert sample("whylens_records_total", model="credit", status="accepted") == len(records)
    for reason, count in reasons.items():
        assert sample("whylens_sampling_decisions_total", model="credit",
                      reason=reason) == count
    for method, count in methods.items():
        assert sample("whylens_explanations_total", method=method) == count
        # One batch call per model version: the histogram counts calls, not rows.
        versions = {t["model"]["version"] for t in traces
                    if t["explanation"]["method"] == method}
        calls = sample("whylens_explain_seconds_count", method=method)
        assert calls == len(versions)
        assert sample("whylens_explain_seconds_bucket", method=method, le="+Inf") == calls
