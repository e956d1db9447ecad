"""Request-scoped access to the runtime, request bodies and callers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import orjson
from fastapi import Depends, Header, Request

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


async def authenticate(
    request: Request, runtime: RuntimeDep,
    # Described once as security schemes in the OpenAPI document (service/security.py).
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Caller:
    """Return the caller of a valid key (no role checked); 401 problem otherwise.

    The caller's name is left on the request state for the audit middleware.
    """
    if runtime.api_keys is None:
        caller = ANONYMOUS_ADMIN
    else:
        caller = runtime.api_keys.authenticate(presented_key(authorization, x_api_key))
    request.state.whylens_caller = caller.name
    return caller


AnyCaller = Annotated[Caller, Depends(authenticate)]


def require(role: Role) -> Callable[..., Awaitable[Caller]]:
    """Build a dependency that authenticates the caller and checks one role.

    Admin endpoints are marked on the request state, so the audit middleware records
    every call to them (including refused ones) once the answer is known.
    """

    async def dependency(request: Request, caller: AnyCaller) -> Caller:
        if role == "admin":
            request.state.whylens_audit = "admin"
        caller.require(role)
        return caller

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
