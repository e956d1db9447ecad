"""Request-scoped access to the runtime, request bodies and callers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request

from service.auth import ANONYMOUS_ADMIN, Caller, Role, presented_key
from service.errors import BodyMalformed, BodyTooLarge
from service.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    """Return the runtime built by the lifespan.

    Async on purpose: FastAPI runs a plain `def` dependency in its thread pool, one
    thread hop per use on every request.
    """
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def _authenticated(request: Request) -> Caller:
    """Return the caller of a valid key (no role checked); 401 problem otherwise.

    The caller's name is left on the request state for the audit middleware. The two
    key headers are read here, not declared as FastAPI parameters: they are described
    once as security schemes in the OpenAPI document (service/security.py), and declared
    ones were validated by FastAPI on every call of every endpoint.
    """
    runtime: Runtime = request.app.state.runtime
    if runtime.api_keys is None:
        caller = ANONYMOUS_ADMIN
    else:
        headers = request.headers
        caller = runtime.api_keys.authenticate(
            presented_key(headers.get("authorization"), headers.get("x-api-key")))
    request.state.whylens_caller = caller.name
    return caller


async def authenticate(request: Request) -> Caller:
    """Dependency: the caller of a valid key, any role (see `_authenticated`)."""
    return _authenticated(request)


AnyCaller = Annotated[Caller, Depends(authenticate)]


def require(role: Role) -> Callable[..., Awaitable[Caller]]:
    """Build a dependency that authenticates the caller and checks one role.

    Admin endpoints are marked on the request state, so the audit middleware records
    every call to them (including refused ones) once the answer is known. One
    dependency without sub-dependencies: FastAPI's solving of each one was a visible
    part of a single explanation's time.
    """

    async def dependency(request: Request) -> Caller:
        caller = _authenticated(request)
        if role == "admin":
            request.state.whylens_audit = "admin"
        caller.require(role)
        return caller

    dependency.authenticates = True  # type: ignore[attr-defined]  # see service/security.py
    return dependency


IngestCaller = Annotated[Caller, Depends(require("ingest"))]
ReadCaller = Annotated[Caller, Depends(require("read"))]
AuditCaller = Annotated[Caller, Depends(require("audit"))]
AdminCaller = Annotated[Caller, Depends(require("admin"))]


async def read_json_body(request: Request, limit: int) -> Any:
    """Read and parse a JSON body within the byte limit."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    data = b"".join(chunks)
    if not data:
        raise BodyMalformed("empty body: expected JSON")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BodyMalformed(f"not valid JSON: {exc.msg} at position {exc.pos}") from exc
