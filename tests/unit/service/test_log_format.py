"""Structured logs: request_id and traceparent fields, bound per request or per record."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from service.log_format import (
    ContextFilter,
    JsonFormatter,
    TextFormatter,
    TraceContextMiddleware,
    log_context,
)

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("whylens.test.logformat")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_the_bound_request_id_and_traceparent(
        captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    with log_context(request_id="r-1", traceparent=TRACEPARENT):
        logger.info("trace stored", extra={"consumer": "w-1", "deliveries": 2})
    logger.warning("outside")
    inside, outside = _lines(stream)
    assert inside["message"] == "trace stored"
    assert inside["request_id"] == "r-1" and inside["traceparent"] == TRACEPARENT
    assert inside["consumer"] == "w-1" and inside["deliveries"] == 2
    assert inside["level"] == "INFO" and str(inside["time"]).endswith("Z")
    assert outside["request_id"] is None and outside["traceparent"] is None


def test_a_malformed_traceparent_is_not_logged(
        captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    with log_context(traceparent='00-"}\ninjected'):
        logger.info("x")
    assert _lines(stream)[0]["traceparent"] is None


def test_exceptions_are_one_json_line(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    try:
        raise ValueError("bad")
    except ValueError:
        logger.exception("failed")
    (line,) = _lines(stream)
    assert "ValueError: bad" in str(line["exception"])


def test_text_lines_append_the_bound_fields() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    with log_context(request_id="r-9"):
        ContextFilter().filter(record)
    assert TextFormatter().format(record).endswith("hello [r-9]")


async def test_middleware_binds_the_traceparent_header_for_the_request(
        captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured

    async def endpoint(request: Request) -> PlainTextResponse:
        logger.info("handling")
        return PlainTextResponse("ok")

    app = TraceContextMiddleware(Starlette(routes=[Route("/", endpoint)]))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        await client.get("/", headers={"traceparent": TRACEPARENT})
        await client.get("/")
    with_header, without = _lines(stream)
    assert with_header["traceparent"] == TRACEPARENT
    assert without["traceparent"] is None
