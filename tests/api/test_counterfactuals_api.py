"""POST /v1/explain?counterfactuals=N: verified, masked counterfactuals in the trace."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import lightgbm as lgb
import pandas as pd
import pytest

from service.app import create_app
from service.settings import CounterfactualSettings, Settings
from tests.api.conftest import LABEL, record_from

PROBLEM = "application/problem+json"


def _rescored(booster: lgb.Booster, frame: pd.DataFrame, i: int,
              changes: dict[str, dict[str, object]]) -> float:
    """LightGBM's own score of row i with the counterfactual's (unmasked) values put in."""
    row = frame.drop(columns=[LABEL]).iloc[[i]].copy()
    for name, change in changes.items():
        row.loc[row.index[0], name] = change["to"]
    return float(booster.predict(row)[0])


async def test_explain_returns_counterfactuals_that_flip_the_label(
    client: httpx.AsyncClient, credit_frame: pd.DataFrame,
    credit_booster: tuple[lgb.Booster, Path],
) -> None:
    booster = credit_booster[0]
    record = record_from(credit_frame, 11, "cf-1", prediction={"score": 0.5, "threshold": 0.2})
    answer = await client.post("/v1/explain?counterfactuals=3", json=record)
    assert answer.status_code == 200, answer.text
    trace = answer.json()
    search = trace["counterfactual_search"]
    assert search["status"] == "found"
    assert search["requested"] == 3
    assert 1 <= search["found"] == len(trace["counterfactuals"]) <= 3
    assert search["method"] == "tree_thresholds"
    assert search["budget"] >= search["evaluations"] > 0
    assert search["compute_ms"] > 0
    label_before = trace["prediction"]["recomputed"]["label"]
    assert search["target"] == {"label": 1 - label_before, "threshold": 0.2}
    masked = {"zip_code", "income", "savings_balance"}
    for cf in trace["counterfactuals"]:
        assert cf["label"] != label_before
        assert cf["n_changed"] == len(cf["changes"]) >= 1
        assert cf["distance"] > 0
        assert not {"age", "credit_history_months"} & set(cf["changes"])
        if not masked & set(cf["changes"]):
            rescored = _rescored(booster, credit_frame, 11, cf["changes"])
            assert (rescored >= 0.2) == (cf["label"] == 1)
            assert rescored == pytest.approx(cf["score"], abs=1e-12)
    stored = (await client.get("/v1/traces/cf-1")).json()
    assert stored["counterfactuals"] == trace["counterfactuals"]


async def test_counterfactual_values_are_masked_like_inputs(
    client: httpx.AsyncClient, credit_frame: pd.DataFrame,
) -> None:
    names = [c for c in credit_frame.columns if c != LABEL]
    only_masked = ["zip_code", "income", "savings_balance"]
    record = record_from(credit_frame, 4, "cf-mask", prediction={"score": 0.5,
                                                                 "threshold": 0.15})
    record["counterfactuals"] = {
        "immutable": [n for n in names if n not in only_masked],
        "mutable": [],
    }
    answer = await client.post("/v1/explain?counterfactuals=3", json=record)
    assert answer.status_code == 200, answer.text
    trace = answer.json()
    changes = [cf["changes"] for cf in trace["counterfactuals"]]
    assert changes, trace["counterfactual_search"]
    for change in changes:
        assert set(change) <= set(only_masked)
        for name, value in change.items():
            if name == "zip_code":
                assert str(value["from"]).startswith("h:") and str(value["to"]).startswith("h:")
            else:
                for side in ("from", "to"):
                    assert isinstance(value[side], str)
                    assert any(mark in value[side] for mark in ("–", "<", ">"))
    raw_zips = set(credit_frame["zip_code"].astype(str))
    for body in (answer.text, (await client.get("/v1/traces/cf-mask")).text):
        assert not any(f'"{z}"' in body for z in raw_zips)
        assert str(record["features"]["income"]) not in body


async def test_everything_immutable_answers_none_found(
    client: httpx.AsyncClient, credit_frame: pd.DataFrame,
) -> None:
    names = [c for c in credit_frame.columns if c != LABEL]
    record = record_from(credit_frame, 2, "cf-none")
    record["counterfactuals"] = {"immutable": names}
    answer = await client.post("/v1/explain?counterfactuals=2", json=record)
    assert answer.status_code == 200
    trace = answer.json()
    assert trace["counterfactuals"] == []
    assert trace["counterfactual_search"]["status"] == "none_found"
    assert "no feature may change" in trace["counterfactual_search"]["reason"]


async def test_logged_record_gets_counterfactuals_on_demand(
    client: httpx.AsyncClient, credit_frame: pd.DataFrame,
) -> None:
    record = record_from(credit_frame, 9, "cf-logged", prediction={"score": 0.5,
                                                                   "threshold": 0.25})
    assert (await client.post("/v1/predictions", json=record)).status_code == 200
    answer = await client.post("/v1/explain?counterfactuals=1", json={
        "request_id": "cf-logged",
        "counterfactuals": {"constraints": ["debt <= credit_limit"],
                            "directions": {"savings_balance": "increase"}}})
    assert answer.status_code == 200, answer.text
    trace = answer.json()
    assert trace["counterfactual_search"]["requested"] == 1
    assert len(trace["counterfactuals"]) <= 1


async def test_plain_explain_has_no_counterfactual_search(
    client: httpx.AsyncClient, credit_frame: pd.DataFrame,
) -> None:
    answer = await client.post("/v1/explain", json=record_from(credit_frame, 1, "cf-plain"))
    assert answer.status_code == 200
    trace = answer.json()
    assert trace["counterfactuals"] == []
    assert "counterfactual_search" not in trace


@pytest.mark.parametrize(("query", "overrides", "field"), [
    ("?counterfactuals=11", None, "counterfactuals"),
    ("?counterfactuals=-1", None, "query.counterfactuals"),
    ("?counterfactuals=2", {"immutable": ["no_such"]}, "counterfactuals.immutable[0]"),
    ("?counterfactuals=2", {"ranges": {"zip_code": {"min": 1}}}, "counterfactuals.ranges.zip_code"),
    ("", {"categories": {"home_ownership": ["castle"]}},
     "counterfactuals.categories.home_ownership[0]"),
    ("", {"directions": {"income": "sideways"}}, "counterfactuals.directions.income"),
    ("", {"constraints": ["debt << credit_limit"]}, "counterfactuals.constraints[0]"),
    ("", {"target": {"label": "maybe"}}, "counterfactuals.target.label"),
    ("", {"target": {"min": 1}}, "counterfactuals.target"),
    ("", {"weights": {"income": -1}}, "counterfactuals.weights.income"),
    ("", {"unknown": 1}, "counterfactuals.unknown"),
])
async def test_bad_counterfactual_asks_are_422_naming_the_field(
    client: httpx.AsyncClient, credit_frame: pd.DataFrame, query: str,
    overrides: dict[str, object] | None, field: str,
) -> None:
    record = record_from(credit_frame, 3, "cf-bad")
    if overrides is not None:
        record["counterfactuals"] = overrides
    answer = await client.post(f"/v1/explain{query}", json=record)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM)
    assert field in [e["field"] for e in answer.json()["errors"]]
    assert "castle" not in answer.text
    assert (await client.get("/v1/traces/cf-bad")).status_code == 404


async def test_sampled_traces_get_the_counterfactuals_of_their_policy_rule(
    published_settings: Settings, credit_frame: pd.DataFrame, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    artifacts = tmp_path / "artifacts"
    shutil.copytree(published_settings.data_dir / "artifacts", artifacts)
    # The deprecated knob is accepted, ignored, and named at start.
    settings = published_settings.model_copy(update={
        "artifacts": artifacts.resolve().as_uri(),
        "traces": f"sqlite:///{tmp_path / 'traces.db'}",
        "counterfactuals": CounterfactualSettings(sampled={"credit": 2})})
    policy = {"rules": [
        {"reason": "canary", "when": "context.cohort == 'canary'", "counterfactuals": 1},
        {"reason": "mobile", "when": "context.segment == 'mobile'"}]}
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://whylens") as http:
            assert (await http.put("/v1/models/credit/policy", json=policy)).status_code == 200
            for rid, context in (("cf-canary", {"cohort": "canary"}),
                                 ("cf-mobile", {"segment": "mobile"})):
                record = record_from(credit_frame, 6, rid, context=context,
                                     prediction={"score": 0.5, "threshold": 0.2})
                answer = await http.post("/v1/predictions", json=record)
                assert answer.json()["sampled"] is True
            canary = (await http.get("/v1/traces/cf-canary")).json()
            mobile = (await http.get("/v1/traces/cf-mobile")).json()
    assert canary["counterfactual_search"]["requested"] == 1
    assert canary["counterfactual_search"]["status"] in ("found", "none_found")
    assert "counterfactual_search" not in mobile and mobile["counterfactuals"] == []
    assert any("WHYLENS_COUNTERFACTUALS__SAMPLED is deprecated" in r.getMessage()
               for r in caplog.records)


async def test_manifest_cross_feature_constraint_binds_every_answer(
    client: httpx.AsyncClient, credit_frame: pd.DataFrame,
) -> None:
    manifest = (await client.get("/v1/models/credit/versions/1")).json()
    assert manifest["manifest"]["constraints"] == ["debt <= credit_limit"]
    features = credit_frame.drop(columns=[LABEL])
    for i in range(5):
        record = record_from(credit_frame, i, f"cf-rel-{i}",
                             prediction={"score": 0.5, "threshold": 0.2})
        trace = (await client.post("/v1/explain?counterfactuals=3", json=record)).json()
        for cf in trace["counterfactuals"]:
            changes = cf["changes"]
            if {"debt", "credit_limit"} & set(changes):
                debt = changes.get("debt", {}).get("to", features["debt"].iloc[i])
                limit = changes.get("credit_limit", {}).get("to",
                                                             features["credit_limit"].iloc[i])
                assert debt <= limit
