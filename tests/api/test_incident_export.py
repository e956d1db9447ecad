"""Incident export through the outbox to a local ServiceNow and a webhook receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from pydantic import SecretStr

from service.settings import ServiceNowSettings, Settings, WebhookSettings
from tests.api.conftest import CanaryPair, record_from
from tests.api.incident_support import PROBLEM, isolated, running_app, wait_until
from tests.servicenow_server import ATTACHMENT, HOOK, TABLE, UPLOAD, FakeServiceNow, Fault

HOOK_SECRET = "hook-secret"


@pytest.fixture
def servicenow() -> Iterator[FakeServiceNow]:
    server = FakeServiceNow(hook_secret=HOOK_SECRET).start()
    yield server
    server.stop()


def export_settings(pair: CanaryPair, tmp_path: Path, server: FakeServiceNow, *,
                    password: str = "s3cret", token: str | None = None,
                    hook_secret: str = HOOK_SECRET) -> Settings:
    return isolated(pair.settings, tmp_path, servicenow=ServiceNowSettings(
        instance_url=server.url, username="whylens", password=SecretStr(password),
        oauth_token=None if token is None else SecretStr(token)),
        webhook=WebhookSettings(url=server.url + HOOK, secret=SecretStr(hook_secret)))


async def incident_with_traces(http: httpx.AsyncClient, frame: pd.DataFrame,
                               incident_id: str) -> None:
    created = await http.post("/v1/incidents", json={
        "id": incident_id, "model": "credit", "title": "approval rate dropped",
        "severity": 2})
    assert created.status_code == 201, created.text
    await http.post("/v1/predictions", json={"records": [
        record_from(frame, i, f"{incident_id}-{i}") for i in range(3)]})
    await http.post(f"/v1/incidents/{incident_id}/close")


async def export(http: httpx.AsyncClient, incident_id: str, target: str) -> dict[str, Any]:
    answer = await http.post(f"/v1/incidents/{incident_id}/export", json={"target": target})
    assert answer.status_code == 202, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def finished_export(http: httpx.AsyncClient, incident_id: str) -> dict[str, Any]:
    latest: dict[str, Any] = {}

    async def finished() -> bool:
        nonlocal latest
        exports = (await http.get(f"/v1/incidents/{incident_id}?limit=1")).json()["exports"]
        latest = exports[-1]
        return latest["state"] in ("done", "failed")

    await wait_until(finished, what=f"the export of {incident_id}")
    return latest


async def test_export_attaches_the_bundle_once_and_adds_a_work_note(
        canary_pair: CanaryPair, credit_frame: pd.DataFrame, tmp_path: Path,
        servicenow: FakeServiceNow) -> None:
    sys_id = servicenow.add_incident("INC0010001")
    async with running_app(export_settings(canary_pair, tmp_path, servicenow)) as http:
        await incident_with_traces(http, credit_frame, "INC0010001")
        queued = await export(http, "INC0010001", "servicenow")
        assert (queued["export"]["state"], queued["duplicate"]) == ("queued", False)
        done = await finished_export(http, "INC0010001")
        assert (done["state"], done["attempts"], done["last_error"]) == ("done", 1, None)
        again = await export(http, "INC0010001", "servicenow")
        assert again["duplicate"] is True and again["export"]["id"] == done["id"]
        assert again["export"]["state"] == "done"
    (attachment,) = servicenow.attachments
    content = attachment["content"]
    assert hashlib.sha256(content).hexdigest() == done["digest"]
    assert attachment["file_name"] == f"whylens-INC0010001-{done['digest'][:16]}.json"
    assert (attachment["table_name"], attachment["table_sys_id"]) == ("incident", sys_id)
    bundle = json.loads(content)
    assert bundle["incident"]["id"] == "INC0010001"
    assert len(bundle["traces"]) == 3
    assert all(t["incidents"] == ["INC0010001"] for t in bundle["traces"])
    assert all(str(t["features"]["zip_code"]).startswith("h:") for t in bundle["traces"])
    (note,) = servicenow.incidents[sys_id]["work_notes"]
    assert "Traces summarized: 3" in note and attachment["file_name"] in note
    assert len(servicenow.requests("PATCH", TABLE + "/{sys_id}")) == 1
    assert len(servicenow.requests("POST", UPLOAD)) == 1


async def test_export_retries_failures_and_never_attaches_twice(
        canary_pair: CanaryPair, credit_frame: pd.DataFrame, tmp_path: Path,
        servicenow: FakeServiceNow) -> None:
    servicenow.add_incident("INC0010002")
    servicenow.fail("GET", TABLE, Fault(status=500), Fault(delay_s=1.0))
    servicenow.fail("GET", ATTACHMENT, Fault(status=429, headers={"Retry-After": "1"}))
    # The upload is stored, then answered 500: the retry must find it, not upload again.
    servicenow.fail("POST", UPLOAD, Fault(status=500, after_commit=True))
    async with running_app(export_settings(canary_pair, tmp_path, servicenow)) as http:
        await incident_with_traces(http, credit_frame, "INC0010002")
        await export(http, "INC0010002", "servicenow")
        done = await finished_export(http, "INC0010002")
        metrics = (await http.get("/metrics")).text
    assert (done["state"], done["attempts"]) == ("done", 5)
    assert len(servicenow.attachments) == 1
    assert len(servicenow.requests("POST", UPLOAD)) == 1
    assert len(servicenow.incidents[next(iter(servicenow.incidents))]["work_notes"]) == 1
    lookups = servicenow.requests("GET", ATTACHMENT)
    later = [s for s in servicenow.seen if s.at > lookups[0].at]
    assert later[0].at - lookups[0].at >= 0.95  # Retry-After: 1 was honoured
    assert ('whylens_incident_export_attempts_total{outcome="retry",target="servicenow"} 4.0'
            in metrics)


async def test_a_queued_export_survives_a_restart(
        canary_pair: CanaryPair, credit_frame: pd.DataFrame, tmp_path: Path,
        servicenow: FakeServiceNow) -> None:
    servicenow.add_incident("INC0010003")
    servicenow.fail("GET", TABLE, *[Fault(status=503)] * 1000)
    settings = export_settings(canary_pair, tmp_path, servicenow)
    async with running_app(settings) as http:
        await incident_with_traces(http, credit_frame, "INC0010003")
        await export(http, "INC0010003", "servicenow")

        async def retried() -> bool:
            view = (await http.get("/v1/incidents/INC0010003?limit=1")).json()
            return bool(view["exports"][0]["attempts"] >= 2)

        await wait_until(retried, what="a failed attempt")
    with servicenow.lock:
        servicenow.faults.clear()
    assert servicenow.attachments == []
    async with running_app(settings) as http:
        done = await finished_export(http, "INC0010003")
    assert done["state"] == "done"
    assert len(servicenow.attachments) == 1


async def test_a_restart_between_steps_resumes_after_the_saved_ones(
        canary_pair: CanaryPair, credit_frame: pd.DataFrame, tmp_path: Path,
        servicenow: FakeServiceNow) -> None:
    sys_id = servicenow.add_incident("INC0010007")
    # The bundle gets attached, then every work note fails until the service restarts.
    servicenow.fail("PATCH", TABLE + "/{sys_id}", *[Fault(status=503)] * 1000)
    settings = export_settings(canary_pair, tmp_path, servicenow)
    async with running_app(settings) as http:
        await incident_with_traces(http, credit_frame, "INC0010007")
        await export(http, "INC0010007", "servicenow")

        async def note_retried() -> bool:
            return len(servicenow.requests("PATCH", TABLE + "/{sys_id}")) >= 2

        await wait_until(note_retried, what="a failed work note")
        assert len(servicenow.attachments) == 1
    with servicenow.lock:
        servicenow.faults.clear()
    async with running_app(settings) as http:
        done = await finished_export(http, "INC0010007")
    assert done["state"] == "done"
    # The saved steps are not repeated: one lookup, one upload, one attachment, one note.
    assert len(servicenow.requests("GET", TABLE)) == 1
    assert len(servicenow.requests("GET", ATTACHMENT)) == 1
    assert len(servicenow.requests("POST", UPLOAD)) == 1
    assert len(servicenow.attachments) == 1
    assert len(servicenow.incidents[sys_id]["work_notes"]) == 1


async def test_webhook_posts_a_signed_body_and_retries_with_the_same_delivery(
        canary_pair: CanaryPair, credit_frame: pd.DataFrame, tmp_path: Path,
        servicenow: FakeServiceNow) -> None:
    servicenow.fail("POST", HOOK, Fault(status=502))
    async with running_app(export_settings(canary_pair, tmp_path, servicenow)) as http:
        await incident_with_traces(http, credit_frame, "WL-HOOK-1")
        queued = await export(http, "WL-HOOK-1", "webhook")
        done = await finished_export(http, "WL-HOOK-1")
    assert done["state"] == "done"
    first, second = servicenow.requests("POST", HOOK)
    assert first.body == second.body
    for seen in (first, second):
        expected = hmac.new(HOOK_SECRET.encode(), seen.body, hashlib.sha256).hexdigest()
        assert seen.headers["X-Whylens-Signature"] == f"sha256={expected}"
        assert seen.headers["X-Whylens-Delivery"] == queued["export"]["id"]
    payload = json.loads(second.body)
    assert payload["incident"]["id"] == "WL-HOOK-1"
    assert payload["bundle"]["sha256"] == done["digest"]
    assert payload["summary"]["counts"]["summarized"] == 3
    # The receiver verified the signature and took the body it was computed over.
    assert servicenow.hooks == [second.body]


async def test_a_webhook_signed_with_another_secret_is_refused_by_the_receiver(
        canary_pair: CanaryPair, credit_frame: pd.DataFrame, tmp_path: Path,
        servicenow: FakeServiceNow) -> None:
    settings = export_settings(canary_pair, tmp_path, servicenow, hook_secret="not-it")
    async with running_app(settings) as http:
        await incident_with_traces(http, credit_frame, "WL-HOOK-2")
        await export(http, "WL-HOOK-2", "webhook")
        failed = await finished_export(http, "WL-HOOK-2")
    assert (failed["state"], failed["attempts"]) == ("failed", 1)
    assert "401" in failed["last_error"] and "not-it" not in json.dumps(failed)
    assert len(servicenow.requests("POST", HOOK)) == 1 and servicenow.hooks == []


async def test_bearer_token_rejections_and_unconfigured_targets(
        canary_pair: CanaryPair, credit_frame: pd.DataFrame, tmp_path: Path) -> None:
    server = FakeServiceNow(token="oauth-token").start()
    try:
        server.add_incident("INC0010004")
        server.add_incident("INC0010005")
        good = export_settings(canary_pair, tmp_path / "good", server, token="oauth-token")
        async with running_app(good) as http:
            await incident_with_traces(http, credit_frame, "INC0010004")
            await export(http, "INC0010004", "servicenow")
            assert (await finished_export(http, "INC0010004"))["state"] == "done"
        bad = export_settings(canary_pair, tmp_path / "bad", server, token="wrong")
        async with running_app(bad) as http:
            await incident_with_traces(http, credit_frame, "INC0010005")
            await export(http, "INC0010005", "servicenow")
            failed = await finished_export(http, "INC0010005")
        assert (failed["state"], failed["attempts"]) == ("failed", 1)
        assert "401" in failed["last_error"] and "oauth-token" not in json.dumps(failed)
        plain = isolated(canary_pair.settings, tmp_path / "plain")
        async with running_app(plain) as http:
            await incident_with_traces(http, credit_frame, "INC0010006")
            answer = await http.post("/v1/incidents/INC0010006/export",
                                     json={"target": "servicenow"})
            assert answer.status_code == 422 and answer.headers["content-type"] == PROBLEM
            assert answer.json()["errors"][0]["field"] == "target"
    finally:
        server.stop()
