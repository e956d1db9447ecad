"""Request-scoped access to the runtime, request bodies and callers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import orjson
from fastapi import Depends, Header, Request

from service.auth import ANONYMOUS_ADMIN, Caller, Role, presented_key
from service.errors import BodyMalformed, BodyTooLarge
from service.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    """Return the runtime built by the lifespan."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def require(role: Role) -> Callable[..., Awaitable[Caller]]:
    """Build a dependency that authenticates the caller and checks one role."""

    async def dependency(
        runtime: RuntimeDep,
        authorization: Annotated[str | None, Header()] = None,
        x_api_key: Annotated[str | None, Header()] = None,
    ) -> Caller:
        if runtime.api_keys is None:
            return ANONYMOUS_ADMIN
        caller = runtime.api_keys.authenticate(presented_key(authorization, x_api_key))
        caller.require(role)
        return caller

    return dependency


IngestCaller = Annotated[Caller, Depends(require("ingest"))]
ReadCaller = Annotated[Caller, Depends(require("read"))]
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
