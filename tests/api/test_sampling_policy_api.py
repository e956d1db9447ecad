"""Per-model sampling policies over HTTP: publish, validate, decide, budget, refresh."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pandas as pd
import pytest

from service.cli import main
from tests.api.conftest import CanaryPair, record_from
from tests.api.incident_support import PROBLEM, isolated, running_app, wait_until

RICH = {"rules": [
    {"reason": "canary", "when": "context.cohort == 'canary'"},
    {"reason": "rich", "when": "features.income > `80000`"},
]}


async def test_default_policy_then_published_versions(canary_pair: CanaryPair,
                                                      tmp_path: Path) -> None:
    async with running_app(isolated(canary_pair.settings, tmp_path)) as http:
        default = (await http.get("/v1/models/credit/policy")).json()
        assert (default["version"], default["source"], default["in_force"]) == (
            "default", "default", "credit@default")
        assert [r["reason"] for r in default["policy"]["rules"]] == ["canary"]
        first = await http.put("/v1/models/credit/policy", json=RICH)
        assert first.status_code == 200, first.text
        assert (first.json()["version"], first.json()["in_force"]) == (1, "credit@1")
        yaml_body = ("rules:\n  - reason: everything\n    rate: 1.0\n"
                     "budget:\n  per_second: 5\n")
        second = await http.put("/v1/models/credit/policy", content=yaml_body,
                                headers={"Content-Type": "application/yaml"})
        assert second.status_code == 200, second.text
        current = (await http.get("/v1/models/credit/policy")).json()
        assert (current["version"], current["versions"]) == (2, [1, 2])
        assert current["policy"]["budget"]["per_second"] == 5
        old = (await http.get("/v1/models/credit/policy?version=1")).json()
        assert [r["reason"] for r in old["policy"]["rules"]] == ["canary", "rich"]
        assert (await http.get("/v1/models/nope/policy")).status_code == 404


async def test_invalid_policy_is_a_422_problem_naming_the_rule_field(
        canary_pair: CanaryPair, tmp_path: Path) -> None:
    bad = {"rules": [{"reason": "a"}, {"reason": "b", "rate": 0.5},
                     {"reason": "c", "when": "features.income >"}]}
    async with running_app(isolated(canary_pair.settings, tmp_path)) as http:
        answer = await http.put("/v1/models/credit/policy", json=bad)
        assert answer.status_code == 422
        assert answer.headers["content-type"] == PROBLEM
        assert [e["field"] for e in answer.json()["errors"]] == ["rules[2].when"]
        answer = await http.put("/v1/models/credit/policy", content=b"rules: [",
                                headers={"Content-Type": "application/yaml"})
        assert answer.status_code == 422
        assert (await http.get("/v1/models/credit/policy")).json()["source"] == "default"


async def test_published_policy_decides_and_names_itself_in_the_trace(
        canary_pair: CanaryPair, credit_frame: pd.DataFrame, tmp_path: Path) -> None:
    incomes = credit_frame["income"]
    rich_row = int(incomes[incomes > 90_000].index[0])
    poor_row = int(incomes[incomes < 50_000].index[0])
    async with running_app(isolated(canary_pair.settings, tmp_path)) as http:
        await http.put("/v1/models/credit/policy", json=RICH)
        rich = (await http.post("/v1/predictions", json=record_from(
            credit_frame, rich_row, "rich-1"))).json()
        poor = (await http.post("/v1/predictions", json=record_from(
            credit_frame, poor_row, "poor-1"))).json()
        assert (rich["sampled"], rich["reason"]) == (True, "rich")
        assert (poor["sampled"], poor["reason"]) == (False, None)
        trace = (await http.get("/v1/traces/rich-1")).json()
        assert trace["sampling"] == {"reason": "rich", "policy": "credit@1"}


async def test_budget_defers_lists_and_counts_what_it_drops(
        canary_pair: CanaryPair, credit_frame: pd.DataFrame, tmp_path: Path) -> None:
    policy = {"rules": [{"reason": "canary", "when": "context.cohort == 'canary'"},
                        {"reason": "sampled"}],
              "budget": {"per_second": 0.001, "burst": 2}}
    async with running_app(isolated(canary_pair.settings, tmp_path)) as http:
        await http.put("/v1/models/credit/policy", json=policy)
        batch = {"records": [record_from(credit_frame, i, f"b-{i}") for i in range(6)]}
        answers = (await http.post("/v1/predictions", json=batch)).json()["records"]
        assert [a["sampled"] for a in answers] == [True, True, False, False, False, False]
        assert all(a["deferred"] and a["reason"] == "sampled" for a in answers[2:])
        canary = (await http.post("/v1/predictions", json=record_from(
            credit_frame, 7, "c-1", context={"cohort": "canary"}))).json()
        assert (canary["sampled"], canary["reason"]) == (True, "canary")
        deferred = (await http.get("/v1/models/credit/deferred?limit=3")).json()
        listed = [r["request_id"] for r in deferred["records"]]
        rest = (await http.get(f"/v1/models/credit/deferred?cursor={deferred['next_cursor']}"
                               )).json()
        listed += [r["request_id"] for r in rest["records"]]
        assert sorted(listed) == ["b-2", "b-3", "b-4", "b-5"]
        assert deferred["records"][0]["reason"] == "sampled"
        metrics = (await http.get("/metrics")).text
        assert 'whylens_sampling_deferred_total{model="credit",reason="sampled"} 4.0' in metrics
        assert (await http.get("/v1/traces/b-3")).status_code == 404
        explained = await http.post("/v1/explain", json={"request_id": "b-3"})
        assert explained.status_code == 200
        assert explained.json()["sampling"]["reason"] == "sampled"


async def test_a_second_replica_picks_up_a_published_policy(
        canary_pair: CanaryPair, credit_frame: pd.DataFrame, tmp_path: Path) -> None:
    settings = isolated(canary_pair.settings, tmp_path)
    async with running_app(settings) as one, running_app(settings) as two:
        before = (await two.post("/v1/predictions", json=record_from(
            credit_frame, 1, "before"))).json()
        assert before["sampled"] is False
        await one.put("/v1/models/credit/policy", json={"rules": [{"reason": "all"}]})
        attempt = 0

        async def replica_two_uses_it() -> bool:
            nonlocal attempt
            attempt += 1
            answer = (await two.post("/v1/predictions", json=record_from(
                credit_frame, 2, f"after-{attempt}"))).json()
            return bool(answer["reason"] == "all")

        await wait_until(replica_two_uses_it, timeout_s=20, what="the refresh on replica two")


async def test_cli_publishes_a_policy_file_beside_the_model(
        canary_pair: CanaryPair, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = isolated(canary_pair.settings, tmp_path)
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules:\n  - reason: cli_rule\n    when: \"features.age > `30`\"\n",
                      encoding="utf-8")
    assert await asyncio.to_thread(
        main, ["policy", "credit", str(policy), "--artifacts", settings.artifacts_uri]) == 0
    assert "version 1 published" in capsys.readouterr().out
    broken = tmp_path / "broken.json"
    broken.write_text('{"rules": [{"reason": "x", "when": "age >"}]}', encoding="utf-8")
    assert await asyncio.to_thread(
        main, ["policy", "credit", str(broken), "--artifacts", settings.artifacts_uri]) == 1
    assert "rules[0].when" in capsys.readouterr().err
    async with running_app(settings) as http:
        current = (await http.get("/v1/models/credit/policy")).json()
        assert (current["version"], current["in_force"]) == (1, "credit@1")
