"""Hostile or oversized input gets a 4xx problem, never a 5xx, and never echoes values."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from service.settings import LimitSettings, Settings
from tests.api.conftest import record_from
from tests.api.security_support import as_role, keyed_client

LIMITS = LimitSettings(body_bytes=20_000, batch_records=5, string_chars=40,
                       header_bytes=4096)


@pytest.fixture
async def hardened(published_settings: Settings,
                   tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with keyed_client(published_settings, tmp_path, limits=LIMITS) as http:
        yield http


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail"} <= set(body) and body["status"] == status
    return body


async def test_a_body_over_the_limit_is_413_whether_declared_or_streamed(
        hardened: httpx.AsyncClient) -> None:
    big = b'{"records": [' + b" " * 30_000 + b"]}"
    declared = await hardened.post("/v1/predictions", content=big,
                                   headers={**as_role("ingest"),
                                            "content-type": "application/json"})
    assert_problem(declared, 413)

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"records": ['
        for _ in range(30):
            yield b" " * 1000
        yield b"]}"

    streamed = await hardened.post("/v1/predictions", content=chunks(),
                                   headers=as_role("ingest"))
    assert "content-length" not in streamed.request.headers
    assert_problem(streamed, 413)
    # The limit holds before authentication, and for routes that parse through FastAPI.
    anonymous = await hardened.post("/v1/explain", content=big)
    assert_problem(anonymous, 413)


async def test_oversized_headers_are_431(hardened: httpx.AsyncClient) -> None:
    response = await hardened.get("/v1/models", headers={**as_role("read"),
                                                         "x-junk": "j" * 5000})
    assert_problem(response, 431)


async def test_batches_strings_and_feature_names_over_their_limits_are_422(
        hardened: httpx.AsyncClient, credit_frame: pd.DataFrame) -> None:
    ingest = as_role("ingest")
    batch = {"records": [record_from(credit_frame, i, f"b-{i}") for i in range(6)]}
    assert assert_problem(await hardened.post("/v1/predictions", json=batch, headers=ingest),
                          422)["errors"][0]["field"] == "records"
    secret = "s3cret-" + "x" * 60
    long_string = record_from(credit_frame, 1, "long-1")
    long_string["features"]["zip_code"] = secret
    body = assert_problem(await hardened.post("/v1/predictions", json=long_string,
                                              headers=ingest), 422)
    assert body["errors"] == [{"field": "features.zip_code",
                               "message": "string longer than 40 characters"}]
    junk = record_from(credit_frame, 2, "junk-1")
    junk["features"].update({f"{'n' * 200}{i}": i for i in range(50)})
    body = assert_problem(await hardened.post("/v1/predictions", json=junk, headers=ingest),
                          422)
    assert len(body["errors"]) == 11
    assert max(len(e["field"]) for e in body["errors"]) <= len("features.") + 64
    for response in (body, ):
        assert secret not in str(response)


@pytest.mark.parametrize("payload", [
    b'{"request_id": "r", "score": NaN}', b'{"a": Infinity}', b'{"a": -Infinity}',
    b'{"a": 1e999}', b"[" * 5000 + b"]" * 5000, b"\xff\xfe", b"", b"not json",
])
async def test_non_finite_numbers_and_malformed_json_are_400(
        hardened: httpx.AsyncClient, payload: bytes) -> None:
    response = await hardened.post("/v1/predictions", content=payload,
                                   headers={**as_role("ingest"),
                                            "content-type": "application/json"})
    assert_problem(response, 400)


@pytest.mark.parametrize("request_id", ["", "has space", "x" * 129, "semi;colon", "ümlaut"])
async def test_request_ids_outside_the_format_are_422(
        hardened: httpx.AsyncClient, credit_frame: pd.DataFrame, request_id: str) -> None:
    record = record_from(credit_frame, 1, request_id)
    body = assert_problem(await hardened.post("/v1/predictions", json=record,
                                              headers=as_role("ingest")), 422)
    assert body["errors"][0]["field"] == "request_id"
    if request_id:
        read = await hardened.get(f"/v1/traces/{request_id}", headers=as_role("read"))
        assert read.status_code in (404, 422)
        assert read.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("url", [
    "/v1/traces?limit=0", "/v1/traces?limit=abc", "/v1/traces?since=yesterday",
    "/v1/traces?cursor=%00%01", "/v1/traces?version=1", "/v1/audit?cursor=1'--",
    "/v1/audit?limit=100000", "/v1/models/..%2F..%2Fetc", "/v1/models/credit/versions/%2e%2e",
    "/v1/models/credit/drift?window=99999999999999999999d",
])
async def test_hostile_query_and_path_values_are_4xx_problems(
        hardened: httpx.AsyncClient, url: str) -> None:
    response = await hardened.get(url, headers=as_role("admin"))
    assert 400 <= response.status_code < 500, (url, response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json"
