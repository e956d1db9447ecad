"""Incidents over HTTP: incident mode, attach, backfill, summary against LightGBM, close."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pandas as pd

from tests.api.conftest import LABEL, CanaryPair, record_from
from tests.api.incident_support import (
    PROBLEM,
    feature_names,
    isolated,
    peer_contrib,
    running_app,
    wait_until,
)


async def open_incident(http: httpx.AsyncClient, incident_id: str, **extra: Any) -> Any:
    answer = await http.post("/v1/incidents", json={
        "id": incident_id, "model": "credit", "title": "scores jumped", "severity": "2",
        **extra})
    assert answer.status_code == 201, answer.text
    return answer.json()


async def test_incident_mode_explains_everything_until_closed(
        canary_pair: CanaryPair, credit_frame: pd.DataFrame, tmp_path: Path) -> None:
    async with running_app(isolated(canary_pair.settings, tmp_path)) as http:
        quiet = (await http.post("/v1/predictions", json=record_from(
            credit_frame, 1, "quiet-1"))).json()
        assert quiet["sampled"] is False
        incident = await open_incident(http, "INC0012345")
        assert (incident["severity"], incident["state"], incident["incident_mode"]) == (
            2, "open", True)
        during = (await http.post("/v1/predictions", json=record_from(
            credit_frame, 2, "during-1"))).json()
        assert (during["sampled"], during["reason"]) == (True, "incident")
        trace = (await http.get("/v1/traces/during-1")).json()
        assert trace["incidents"] == ["INC0012345"]
        assert trace["sampling"] == {"reason": "incident", "policy": "credit@default"}
        found = (await http.get("/v1/traces?incident=INC0012345")).json()["traces"]
        assert [t["request_id"] for t in found] == ["during-1"]
        closed = (await http.post("/v1/incidents/INC0012345/close")).json()
        assert (closed["state"], closed["incident_mode"]) == ("closed", False)
        after = (await http.post("/v1/predictions", json=record_from(
            credit_frame, 3, "after-1"))).json()
        assert after["sampled"] is False
        view = (await http.get("/v1/incidents/INC0012345")).json()
        assert [t["request_id"] for t in view["traces"]] == ["during-1"]
        assert view["closed_at"] is not None
        listed = (await http.get("/v1/incidents?state=closed")).json()["incidents"]
        assert [i["id"] for i in listed] == ["INC0012345"]


async def test_opening_is_validated(canary_pair: CanaryPair, tmp_path: Path) -> None:
    async with running_app(isolated(canary_pair.settings, tmp_path)) as http:
        created = await http.post("/v1/incidents", json={"model": "credit", "title": "t",
                                                         "severity": 5, "explain_all": False})
        assert created.status_code == 201
        assert created.json()["id"].startswith("WL-")
        assert created.json()["incident_mode"] is False
        again = await http.post("/v1/incidents", json={"id": created.json()["id"],
                                                       "model": "credit", "title": "t",
                                                       "severity": 1})
        assert again.status_code == 409 and again.headers["content-type"] == PROBLEM
        unknown = await http.post("/v1/incidents", json={"model": "nope", "title": "t",
                                                         "severity": 1})
        assert unknown.status_code == 404
        for severity in (7, True, "high"):
            bad = await http.post("/v1/incidents", json={"model": "credit", "title": "t",
                                                         "severity": severity})
            assert bad.status_code == 422
            assert [e["field"] for e in bad.json()["errors"]] == ["severity"]
        assert (await http.get("/v1/incidents/INC-NONE")).status_code == 404


async def test_attach_links_traces_and_explains_retained_records(
        canary_pair: CanaryPair, credit_frame: pd.DataFrame, tmp_path: Path) -> None:
    async with running_app(isolated(canary_pair.settings, tmp_path)) as http:
        await http.post("/v1/predictions", json={"records": [
            record_from(credit_frame, 4, "has-trace", context={"cohort": "canary"}),
            record_from(credit_frame, 5, "logged-only")]})
        await open_incident(http, "INC-ATTACH", explain_all=False)
        answer = await http.post("/v1/incidents/INC-ATTACH/traces", json={
            "request_ids": ["has-trace", "logged-only", "never-seen"]})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["attached"] == ["has-trace", "logged-only"]
        assert (body["explained"], body["not_found"]) == (["logged-only"], ["never-seen"])
        linked = (await http.get("/v1/traces/has-trace")).json()
        assert linked["incidents"] == ["INC-ATTACH"] and linked["sampling"]["reason"] == "canary"
        explained = (await http.get("/v1/traces/logged-only")).json()
        assert explained["sampling"]["reason"] == "incident"
        assert explained["incidents"] == ["INC-ATTACH"]
        again = (await http.post("/v1/explain", json={"request_id": "has-trace"})).json()
        assert again["incidents"] == ["INC-ATTACH"]
        view = (await http.get("/v1/incidents/INC-ATTACH?limit=1")).json()
        assert len(view["traces"]) == 1 and view["next_cursor"] is not None
        assert view["summary"]["counts"]["attached"] == 2
        page_two = (await http.get(
            f"/v1/incidents/INC-ATTACH?limit=1&cursor={view['next_cursor']}")).json()
        assert "summary" not in page_two
        assert {view["traces"][0]["request_id"], page_two["traces"][0]["request_id"]} == {
            "has-trace", "logged-only"}


async def test_backfill_explains_the_unexplained_records_of_its_window(
        canary_pair: CanaryPair, credit_frame: pd.DataFrame, tmp_path: Path) -> None:
    rows = list(range(20, 36))
    records = [record_from(credit_frame, i, f"bf-{i}", timestamp=f"2026-11-25T10:{i:02d}:00Z")
               for i in rows]
    records += [record_from(credit_frame, 40, "bf-late", timestamp="2026-11-25T12:00:00Z"),
                record_from(credit_frame, 41, "bf-canary", timestamp="2026-11-25T10:30:00Z",
                            context={"cohort": "canary"})]
    async with running_app(isolated(canary_pair.settings, tmp_path)) as http:
        await http.post("/v1/predictions", json={"records": records})
        await open_incident(http, "INC-BF", explain_all=False)
        bad = await http.post("/v1/incidents/INC-BF/backfill", json={
            "since": "2026-11-25T10:00:00Z", "where": "features.age >"})
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "where"
        started = await http.post("/v1/incidents/INC-BF/backfill", json={
            "since": "2026-11-25T10:00:00Z", "until": "2026-11-25T11:00:00Z",
            "where": "features.age > `40`"})
        assert started.status_code == 202, started.text
        job_id = started.json()["backfill"]["id"]

        async def finished() -> bool:
            view = (await http.get("/v1/incidents/INC-BF")).json()
            return bool(view["backfills"][0]["state"] == "done")

        await wait_until(finished, what="the backfill")
        progress = (await http.get("/v1/incidents/INC-BF")).json()["backfills"][0]
        assert progress["id"] == job_id
        older = [f"bf-{i}" for i in rows if credit_frame.loc[i, "age"] > 40]
        assert older and len(older) < len(rows)
        assert (progress["scanned"], progress["already_explained"], progress["explained"],
                progress["filtered_out"]) == (len(rows) + 1, 1, len(older),
                                              len(rows) - len(older))
        found = (await http.get("/v1/traces?incident=INC-BF&limit=100")).json()["traces"]
        assert sorted(t["request_id"] for t in found) == sorted(older)
        assert all(t["sampling"]["reason"] == "incident" for t in found)


async def test_summary_matches_lightgbm_and_compares_canary_with_production(
        canary_pair: CanaryPair, credit_frame: pd.DataFrame, tmp_path: Path) -> None:
    production_rows, canary_rows = list(range(50, 62)), list(range(62, 68))
    names = feature_names(credit_frame)
    settings = isolated(canary_pair.settings, tmp_path)
    async with running_app(settings) as http:
        await open_incident(http, "INC-SUM")
        # Event times inside the incident window, so its drift windows count them.
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        skewed = record_from(credit_frame, production_rows[0], f"sum-{production_rows[0]}",
                             prediction={"score": 0.999, "threshold": 0.5}, timestamp=now)
        batch = [skewed] + [record_from(credit_frame, i, f"sum-{i}", timestamp=now)
                            for i in production_rows[1:]]
        batch += [record_from(credit_frame, i, f"sum-{i}", version="canary", timestamp=now,
                              context={"cohort": "canary"}) for i in canary_rows]
        answers = (await http.post("/v1/predictions", json={"records": batch})).json()
        assert {a["reason"] for a in answers["records"]} == {"incident"}
        view = (await http.get("/v1/incidents/INC-SUM")).json()
    artifacts = Path(urlsplit(settings.artifacts_uri).path)
    summary = view["summary"]
    assert summary["versions"] == {"1": len(production_rows), "2": len(canary_rows)}
    assert summary["cohorts"] == {"(none)": len(production_rows), "canary": len(canary_rows)}
    # Logged scores (0.5, one 0.999) against LightGBM's own probabilities of each version,
    # at the service's default tolerance.
    logged = np.array([0.999] + [0.5] * (len(production_rows) - 1) + [0.5] * len(canary_rows))
    features_only = credit_frame.drop(columns=[LABEL])
    scores = np.concatenate([canary_pair.production.predict(features_only.iloc[production_rows]),
                             canary_pair.canary.predict(features_only.iloc[canary_rows])])
    expected_mismatches = int((~np.isclose(logged, scores, rtol=1e-3, atol=1e-3)).sum())
    assert summary["counts"]["mismatches"] == expected_mismatches
    assert summary["counts"]["by_reason"] == {"incident": len(production_rows) + len(canary_rows)}
    for version, booster, rows in (("1", canary_pair.production, production_rows),
                                   ("2", canary_pair.canary, canary_rows)):
        peer = np.abs(peer_contrib(booster, credit_frame, rows)[:, :-1]).mean(axis=0)
        features = summary["attribution"][version]["features"]
        np.testing.assert_allclose([features[n]["mean_abs"] for n in names], peer, atol=1e-9)
        background = pd.read_parquet(io.BytesIO(
            (artifacts / "models" / "credit" / version / "background.parquet").read_bytes()))
        background = background[names].iloc[:100]
        base = np.abs(np.asarray(booster.predict(background, pred_contrib=True))[:, :-1])
        np.testing.assert_allclose([features[n]["baseline_mean_abs"] for n in names],
                                   base.mean(axis=0), atol=1e-9)
    moved = [abs(m["change"]) for m in summary["moved_most"]]
    assert moved == sorted(moved, reverse=True)
    comparison = summary["canary_comparison"]
    assert (comparison["production"], comparison["canary"], comparison["compared"]) == (
        "1", "2", len(canary_rows))
    diff = (peer_contrib(canary_pair.canary, credit_frame, canary_rows)[:, :-1]
            - peer_contrib(canary_pair.production, credit_frame, canary_rows)[:, :-1])
    by_name = {f["feature"]: f for f in comparison["features"]}
    np.testing.assert_allclose([by_name[n]["mean_difference"] for n in names],
                               diff.mean(axis=0), atol=1e-9)
    np.testing.assert_allclose([by_name[n]["mean_abs_difference"] for n in names],
                               np.abs(diff).mean(axis=0), atol=1e-9)
    ranked = [f["mean_abs_difference"] for f in comparison["features"]]
    assert ranked == sorted(ranked, reverse=True)
    assert set(summary["drift"]) == {"1", "2"}
    for version, rows in (("1", production_rows), ("2", canary_rows)):
        drift = summary["drift"][version]
        assert drift.get("status") != "unavailable", drift
        assert drift["count"] == len(rows)
        assert set(drift["features"]) == set(names) - {LABEL}
    assert LABEL not in summary["attribution"]["1"]["features"]


async def test_another_replica_follows_incident_mode_on_and_off(
        canary_pair: CanaryPair, credit_frame: pd.DataFrame, tmp_path: Path) -> None:
    settings = isolated(canary_pair.settings, tmp_path)
    async with running_app(settings) as one, running_app(settings) as two:
        attempt = 0

        async def replica_two_reason() -> str | None:
            nonlocal attempt
            attempt += 1
            answer = (await two.post("/v1/predictions", json=record_from(
                credit_frame, attempt % 100, f"follow-{attempt}"))).json()
            return answer["reason"] if answer["sampled"] else None

        assert await replica_two_reason() is None
        await open_incident(one, "INC-FOLLOW")

        async def in_incident_mode() -> bool:
            return await replica_two_reason() == "incident"

        await wait_until(in_incident_mode, timeout_s=20, what="incident mode on replica two")
        closed = await one.post("/v1/incidents/INC-FOLLOW/close")
        assert closed.status_code == 200

        async def left_incident_mode() -> bool:
            return await replica_two_reason() is None

        await wait_until(left_incident_mode, timeout_s=20, what="the close on replica two")
        linked = (await two.get("/v1/traces?incident=INC-FOLLOW&limit=100")).json()["traces"]
        assert linked and all(t["sampling"]["reason"] == "incident" for t in linked)


async def test_a_backfill_cut_by_a_restart_finishes_on_the_next_start(
        canary_pair: CanaryPair, credit_frame: pd.DataFrame, tmp_path: Path) -> None:
    rows = list(range(100, 500))
    records = [record_from(credit_frame, i, f"rs-{i}",
                           timestamp=f"2026-11-25T09:{i % 60:02d}:{i % 59:02d}Z") for i in rows]
    # One record per page and step: the restart lands between saved pages.
    settings = isolated(canary_pair.settings, tmp_path, incidents=canary_pair.settings.incidents
                        .model_copy(update={"backfill_page": 1, "backfill_slice_s": 0.001}))
    async with running_app(settings) as http:
        for start in range(0, len(records), 200):
            await http.post("/v1/predictions", json={"records": records[start:start + 200]})
        await open_incident(http, "INC-RS", explain_all=False)
        started = await http.post("/v1/incidents/INC-RS/backfill", json={
            "since": "2026-11-25T09:00:00Z", "until": "2026-11-25T10:00:00Z",
            "where": "features.age > `40`"})
        assert started.status_code == 202, started.text

        async def under_way() -> bool:
            view = (await http.get("/v1/incidents/INC-RS")).json()
            return bool(view["backfills"][0]["scanned"] > 0)

        # Stop once some pages are saved (the shutdown cancels the step in flight).
        await wait_until(under_way, what="the first backfill pages")
    async with running_app(settings) as http:

        async def finished() -> bool:
            view = (await http.get("/v1/incidents/INC-RS")).json()
            return bool(view["backfills"][0]["state"] == "done")

        await wait_until(finished, what="the resumed backfill")
        progress = (await http.get("/v1/incidents/INC-RS")).json()["backfills"][0]
        found = (await http.get("/v1/traces?incident=INC-RS&limit=500")).json()["traces"]
    older = sorted(f"rs-{i}" for i in rows if credit_frame.loc[i, "age"] > 40)
    assert older and len(older) < len(rows)
    # Nothing lost: every matching record is explained and linked, the rest filtered out.
    assert sorted(t["request_id"] for t in found) == older
    assert progress["scanned"] == len(rows)
    assert progress["filtered_out"] == len(rows) - len(older)
    # A page redone after the cut finds its traces already there: counted once either way.
    assert progress["explained"] + progress["already_explained"] == len(older)
