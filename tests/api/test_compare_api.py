"""POST /v1/explain?compare=...: one record under two versions, each exact TreeSHAP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tests.api.conftest import LABEL, CanaryPair, record_from
from tests.api.incident_support import PROBLEM, feature_names, isolated, peer_contrib, running_app


async def test_compare_returns_both_exact_explanations_and_ranked_differences(
        canary_pair: CanaryPair, credit_frame: pd.DataFrame, tmp_path: Path) -> None:
    row = 11
    names = feature_names(credit_frame)
    record = record_from(credit_frame, row, "cmp-1")
    frame = credit_frame
    async with running_app(isolated(canary_pair.settings, tmp_path)) as http:
        answer = await http.post("/v1/explain?compare=production,canary", json=record)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (await http.get("/v1/traces/cmp-1")).status_code == 404
    assert body["compare"] == ["production", "canary"]
    production, canary = body["versions"]
    assert (production["as"], production["version"], canary["as"], canary["version"]) == (
        "production", "1", "canary", "2")
    for side, booster in ((production, canary_pair.production), (canary, canary_pair.canary)):
        peer = peer_contrib(booster, frame, [row])[0]
        np.testing.assert_allclose([side["attributions"][n] for n in names], peer[:-1],
                                   atol=1e-9)
        assert abs(side["base_value"] - peer[-1]) < 1e-9
        margin = booster.predict(frame.drop(columns=[LABEL]).iloc[[row]], raw_score=True)[0]
        assert abs(side["output_value"] - margin) <= 1e-6 * max(1.0, abs(margin))
        assert side["output_space"] == "log_odds"
    expected = {n: canary["attributions"][n] - production["attributions"][n] for n in names}
    differences = body["differences"]
    assert [d["feature"] for d in differences] == sorted(names, key=lambda n: -abs(expected[n]))
    for entry in differences:
        assert abs(entry["difference"] - expected[entry["feature"]]) < 1e-12
        assert entry["attributions"] == {
            "production": production["attributions"][entry["feature"]],
            "canary": canary["attributions"][entry["feature"]]}
    assert abs(body["output_difference"]
               - (canary["output_value"] - production["output_value"])) < 1e-9
    assert body["comparable"] is True
    zip_entry = next(d for d in differences if d["feature"] == "zip_code")
    assert str(zip_entry["value"]).startswith("h:")
    assert zip_entry["value"] != record["features"]["zip_code"]


async def test_compare_a_logged_record_by_request_id_and_by_version(
        canary_pair: CanaryPair, credit_frame: pd.DataFrame, tmp_path: Path) -> None:
    async with running_app(isolated(canary_pair.settings, tmp_path)) as http:
        await http.post("/v1/predictions", json=record_from(credit_frame, 12, "cmp-logged"))
        answer = await http.post("/v1/explain?compare=2,1", json={"request_id": "cmp-logged"})
        assert answer.status_code == 200, answer.text
        first, second = answer.json()["versions"]
        peer = peer_contrib(canary_pair.canary, credit_frame, [12])[0]
        names = feature_names(credit_frame)
        np.testing.assert_allclose([first["attributions"][n] for n in names], peer[:-1],
                                   atol=1e-9)
        assert (first["version"], second["version"]) == ("2", "1")
        single = await http.post("/v1/explain?compare=production", json={"request_id": "x"})
        assert single.status_code == 422 and single.headers["content-type"] == PROBLEM
        assert single.json()["errors"][0]["field"] == "compare"
        unknown = await http.post("/v1/explain?compare=production,nope",
                                  json={"request_id": "cmp-logged"})
        assert unknown.status_code == 404
        missing = await http.post("/v1/explain?compare=1,2", json={"request_id": "never"})
        assert missing.status_code == 404
