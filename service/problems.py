"""The only place that knows HTTP errors: exception type → status and problem type."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from explainers.errors import ExplainerError
from service.errors import (
    AuthenticationMissing,
    BodyMalformed,
    BodyTooLarge,
    HeadersTooLarge,
    IncidentExists,
    IncidentNotFound,
    InputsExpired,
    ModelUnavailable,
    ModelUnknown,
    PolicyUnreadable,
    RecordInvalid,
    RecordNotFound,
    RoleMissing,
    TraceNotFound,
    VersionUnknown,
)
from storage.crypto import SealBroken
from storage.errors import CursorInvalid, SpoolFull, SpoolLocked, StorageError, StoreUnavailable
from storage.keyring import KeyUnknown

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://whylens.dev/problems/"

PROBLEMS: dict[type[Exception], tuple[int, str, str]] = {
    RecordInvalid: (422, "validation-error", "Request does not match the model's contract"),
    BodyMalformed: (400, "malformed-body", "Malformed request body"),
    BodyTooLarge: (413, "body-too-large", "Request body too large"),
    ModelUnknown: (404, "model-not-found", "Unknown model"),
    VersionUnknown: (404, "version-not-found", "Unknown model version"),
    TraceNotFound: (404, "trace-not-found", "Trace not found"),
    RecordNotFound: (404, "record-not-found", "Logged record not found"),
    CursorInvalid: (422, "validation-error", "Invalid cursor"),
    AuthenticationMissing: (401, "unauthenticated", "Missing or unknown API key"),
    RoleMissing: (403, "forbidden", "Role missing"),
    ModelUnavailable: (503, "model-unavailable", "Model version cannot be loaded"),
    StoreUnavailable: (503, "store-unavailable", "A backing store is unavailable"),
    SpoolFull: (503, "spool-full", "Trace store unavailable and outage spool full"),
    SpoolLocked: (503, "spool-unavailable", "Trace store unavailable and outage spool locked"),
    InputsExpired: (410, "inputs-expired", "Raw inputs past retention"),
    HeadersTooLarge: (431, "headers-too-large", "Request headers too large"),
    KeyUnknown: (500, "sealed-inputs-unreadable", "Sealed inputs cannot be opened"),
    SealBroken: (500, "sealed-inputs-unreadable", "Sealed inputs cannot be opened"),
    IncidentNotFound: (404, "incident-not-found", "Incident not found"),
    IncidentExists: (409, "incident-exists", "Incident already exists"),
    PolicyUnreadable: (503, "policy-unreadable", "Published sampling policy is unreadable"),
}


def problem_response(
    status: int, type_: str, title: str, detail: str, *, errors: list[dict[str, str]] | None = None
) -> Response:
    """Render an `application/problem+json` response."""
    body: dict[str, Any] = {"type": TYPE_BASE + type_, "title": title, "status": status,
                            "detail": detail}
    if errors is not None:
        body["errors"] = errors
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return Response(orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON,
                    headers=headers)


def _lookup(exc: Exception) -> tuple[int, str, str] | None:
    for cls in type(exc).__mro__:
        if cls in PROBLEMS:
            return PROBLEMS[cls]
    return None


async def handle_exception(request: Request, exc: Exception) -> Response:
    """Render any exception as a problem; unmapped ones are a generic 500."""
    mapped = _lookup(exc)
    if mapped is None:
        logger.exception("unhandled error on %s %s", request.method, request.url.path,
                         exc_info=exc)
        return problem_response(500, "internal-error", "Internal error",
                                "the service failed; the error was logged")
    status, type_, title = mapped
    if status >= 500:
        logger.error("%s on %s %s: %s", type_, request.method, request.url.path, exc)
    errors = None
    if isinstance(exc, RecordInvalid):
        errors = [{"field": e.field, "message": e.message} for e in exc.errors]
    detail = str(exc)
    if isinstance(exc, StoreUnavailable):
        # The driver's message names hosts and ports: logged above, not told to callers.
        detail = f"the {exc.backend} store did not answer; retry later"
    return problem_response(status, type_, title, detail, errors=errors)


async def handle_request_validation(request: Request, exc: Exception) -> Response:
    """Render FastAPI's own parameter validation (query strings, paths) as a 422 problem."""
    assert isinstance(exc, RequestValidationError)
    errors = []
    for err in exc.errors():
        location = [str(part) for part in err.get("loc", ()) if part not in ("body",)]
        errors.append({"field": ".".join(location) or "body", "message": str(err.get("msg"))})
    return problem_response(422, "validation-error", "Invalid request parameters",
                            "; ".join(f"{e['field']}: {e['message']}" for e in errors),
                            errors=errors)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Render routing errors (404 path, 405 method) as problems too."""
    assert isinstance(exc, StarletteHTTPException)
    return problem_response(exc.status_code, "http-error", str(exc.detail), str(exc.detail))


def install_problem_handlers(app: FastAPI) -> None:
    """Register the handlers on an app."""
    app.add_exception_handler(RequestValidationError, handle_request_validation)
    app.add_exception_handler(StarletteHTTPException, handle_http_exception)
    for exc_type in (*PROBLEMS, ExplainerError, StorageError, Exception):
        app.add_exception_handler(exc_type, handle_exception)
