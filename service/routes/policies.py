"""A model's sampling policy (read, publish) and the records its budget deferred."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from service.deps import AdminCaller, ReadCaller, RuntimeDep
from service.errors import BodyTooLarge, FieldError, RecordInvalid
from service.sampling.admin import list_deferred, publish_policy, read_policy
from service.validation import parse_time

router = APIRouter(tags=["sampling"])

MAX_PAGE = 500


def _json(body: Any) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


@router.get("/v1/models/{name}/policy")
async def get_policy(name: str, runtime: RuntimeDep, caller: ReadCaller,
                     version: Annotated[int | None, Query(ge=1)] = None) -> Response:
    """The sampling policy in force (published, else the default), or one past version."""
    return _json(await read_policy(runtime, name, version))


@router.put("/v1/models/{name}/policy")
async def put_policy(name: str, request: Request, runtime: RuntimeDep,
                     caller: AdminCaller) -> Response:
    """Publish the next policy version (JSON, or YAML with a yaml content type)."""
    data = await request.body()
    if len(data) > runtime.settings.limits.body_bytes:
        raise BodyTooLarge(runtime.settings.limits.body_bytes)
    yaml_text = "yaml" in request.headers.get("content-type", "")
    return _json(await publish_policy(runtime, name, data, yaml_text=yaml_text, caller=caller))


@router.get("/v1/models/{name}/deferred")
async def get_deferred(
    name: str, runtime: RuntimeDep, caller: ReadCaller,
    since: str | None = None, until: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50, cursor: str | None = None,
) -> Response:
    """Records a rule sampled but the explanation budget deferred, newest first."""
    bounds = {}
    for field, value in (("since", since), ("until", until)):
        bounds[field] = None if value is None else parse_time(value)
        if value is not None and bounds[field] is None:
            raise RecordInvalid([FieldError(field, "expected an ISO 8601 date-time")])
    return _json(await list_deferred(runtime, name, since_ms=bounds["since"],
                                     until_ms=bounds["until"], limit=limit, cursor=cursor))
