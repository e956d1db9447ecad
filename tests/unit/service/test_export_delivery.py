"""Export calls: which answers are retried, Retry-After parsing, backoff bounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from service.errors import ExportRejected, ExportRetryable
from service.incidents.delivery import call, retry_after_s
from service.incidents.jobs import retry_delay_s
from service.settings import OutboxSettings


def answering(status: int, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers=headers, json={"error": {"message": "nope"}})

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
async def test_server_errors_and_throttling_are_retried(status: int) -> None:
    async with answering(status, {"Retry-After": "7"}) as client:
        with pytest.raises(ExportRetryable) as caught:
            await call(client, "t", "GET", "http://sn.test/api/now/table/incident?x=1")
    assert str(status) in caught.value.reason and "x=1" not in caught.value.reason
    assert caught.value.retry_after_s == 7.0


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_other_client_errors_are_final(status: int) -> None:
    async with answering(status) as client:
        with pytest.raises(ExportRejected) as caught:
            await call(client, "t", "PATCH", "http://sn.test/api/now/table/incident/1")
    assert "nope" in caught.value.reason


async def test_timeouts_and_refused_connections_are_retried() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(ExportRetryable):
            await call(client, "t", "GET", "http://sn.test/")


def test_retry_after_reads_seconds_and_http_dates() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    assert retry_after_s(httpx.Response(429, headers={"Retry-After": "3"})) == 3.0
    assert 100 < (retry_after_s(httpx.Response(429, headers={"Retry-After": later})) or 0) <= 120
    assert retry_after_s(httpx.Response(429, headers={"Retry-After": "soon"})) is None
    assert retry_after_s(httpx.Response(429)) is None
    assert retry_after_s(httpx.Response(429, headers={"Retry-After": "999999"})) == 3600.0


def test_backoff_doubles_within_jitter_and_cap_and_honours_retry_after() -> None:
    settings = OutboxSettings(backoff_s=2.0, backoff_max_s=30.0)
    for attempts, full in ((1, 2.0), (2, 4.0), (3, 8.0), (6, 30.0), (20, 30.0)):
        delay = retry_delay_s(attempts, settings)
        assert full / 2 <= delay <= full
    assert retry_delay_s(1, settings, 45.0) == 45.0
