"""Log records with request_id and traceparent fields; text or one JSON object per line.

The fields come from context variables: `TraceContextMiddleware` binds the W3C
`traceparent` header for the duration of an HTTP request, and code that handles one
record (the worker, the spool replay) binds its request ID with `log_context`. Both are
also taken from a call's `extra={...}`. Log messages never carry feature values.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

_request_id: ContextVar[str | None] = ContextVar("whylens_request_id", default=None)
_traceparent: ContextVar[str | None] = ContextVar("whylens_traceparent", default=None)

# version-traceid-parentid-flags; anything else is not logged (it is caller-controlled).
TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message", "asctime", "request_id", "traceparent"}


@contextlib.contextmanager
def log_context(*, request_id: str | None = None,
                traceparent: str | None = None) -> Iterator[None]:
    """Bind request_id and/or traceparent to every log record made inside the block."""
    tokens = []
    if request_id is not None:
        tokens.append((_request_id, _request_id.set(request_id)))
    if traceparent is not None and TRACEPARENT.match(traceparent):
        tokens.append((_traceparent, _traceparent.set(traceparent)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class ContextFilter(logging.Filter):
    """Give every record `request_id` and `traceparent` attributes (None when unbound)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the fields; never drops a record."""
        if getattr(record, "request_id", None) is None:
            record.request_id = _request_id.get()
        if getattr(record, "traceparent", None) is None:
            record.traceparent = _traceparent.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, traceparent, extras."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record."""
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            "traceparent": getattr(record, "traceparent", None),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                document[key] = value
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(document, default=str).decode()


class TextFormatter(logging.Formatter):
    """The classic line, with `[request_id traceparent]` appended when bound."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        """Render the record."""
        line = super().format(record)
        bound = [str(v) for v in (getattr(record, "request_id", None),
                                  getattr(record, "traceparent", None)) if v]
        return f"{line} [{' '.join(bound)}]" if bound else line


def configure_logging(level: str, log_format: str) -> None:
    """Send every log record to stderr in the chosen format (called once by the CLI).

    Like `logging.basicConfig`, it leaves a root logger that already has handlers alone
    (an embedding application, or a test runner, owns logging then).
    """
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())


class TraceContextMiddleware:
    """Bind the request's W3C `traceparent` header to its log records (pure ASGI)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app with the header bound."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        traceparent = None
        for name, value in scope.get("headers", ()):
            if name == b"traceparent":
                traceparent = value.decode("latin-1").strip().lower()
                break
        with log_context(traceparent=traceparent):
            await self.app(scope, receive, send)
