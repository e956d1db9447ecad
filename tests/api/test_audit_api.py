"""The audit trail over HTTP: admin calls and unmasks are logged, refusals too, and an
unmask whose audit entry cannot be written returns no raw value."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from tests.api.conftest import record_from
from tests.api.security_support import as_role, keyed_client


@pytest.fixture
async def audited(published_settings, tmp_path: Path,  # type: ignore[no-untyped-def]
                  credit_frame: pd.DataFrame) -> AsyncIterator[httpx.AsyncClient]:
    async with keyed_client(published_settings, tmp_path) as http:
        record = record_from(credit_frame, 4, "aud-1", context={"cohort": "canary"})
        assert (await http.post("/v1/predictions", json=record,
                                headers=as_role("ingest"))).json()["sampled"]
        yield http


async def entries(http: httpx.AsyncClient, **params: object) -> list[dict[str, object]]:
    response = await http.get("/v1/audit", params=params, headers=as_role("admin"))
    assert response.status_code == 200, response.text
    found: list[dict[str, object]] = response.json()["entries"]
    return found


async def test_admin_calls_are_logged_with_who_what_status_and_request_id(
        audited: httpx.AsyncClient) -> None:
    body = {"id": "INC-AUD", "model": "credit", "title": "audit", "severity": 2}
    created = await audited.post("/v1/incidents", json=body,
                                 headers={**as_role("admin"), "X-Request-ID": "chg-42"})
    assert created.status_code == 201
    refused = await audited.post("/v1/incidents", json=body, headers=as_role("read"))
    assert refused.status_code == 403
    anonymous = await audited.post("/v1/incidents", json=body)
    assert anonymous.status_code == 401
    logged = [(e["actor"], e["action"], e["target"], e["status"], e["request_id"])
              for e in await entries(audited) if "incidents" in str(e["target"])]
    assert logged == [("read-key", "admin", "POST /v1/incidents", 403, None),
                      ("admin-key", "admin", "POST /v1/incidents", 201, "chg-42")]


async def test_unmask_is_logged_and_the_log_pages_newest_first(
        audited: httpx.AsyncClient) -> None:
    for _ in range(3):
        response = await audited.get("/v1/traces/aud-1?unmask=true", headers=as_role("audit"))
        assert response.status_code == 200
    first = await audited.get("/v1/audit", params={"limit": 2}, headers=as_role("admin"))
    page = first.json()
    assert len(page["entries"]) == 2 and page["next_cursor"]
    rest = await entries(audited, limit=50, cursor=page["next_cursor"])
    everything = page["entries"] + rest
    unmasks = [e for e in everything if e["action"] == "trace.unmask"]
    assert len(unmasks) == 3
    assert all(e["actor"] == "audit-key" and e["request_id"] == "aud-1"
               and e["detail"] == {"features": "income,savings_balance,zip_code"}
               for e in unmasks)
    ids = [e["id"] for e in everything]
    assert len(set(ids)) == len(ids)
    bad = await audited.get("/v1/audit", params={"cursor": "x'--"}, headers=as_role("admin"))
    assert bad.status_code == 422


async def test_an_unmask_that_cannot_be_audited_reveals_nothing(
        audited: httpx.AsyncClient) -> None:
    runtime = audited.app.state.runtime  # type: ignore[attr-defined]
    await runtime.audit.close()
    response = await audited.get("/v1/traces/aud-1?unmask=true", headers=as_role("audit"))
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert "unmasked" not in response.text
    masked = await audited.get("/v1/traces/aud-1", headers=as_role("read"))
    assert masked.status_code == 200
