"""Liveness, readiness and metrics: no API key needed."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from service.deps import RuntimeDep
from service.errors import ServiceError
from service.problems import PROBLEM_JSON, TYPE_BASE
from storage.errors import StorageError

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(runtime: RuntimeDep) -> Response:
    """Stores reachable and aliased models loadable; 503 problem otherwise."""
    checks: dict[str, Any] = {}
    ready = True
    try:
        await runtime.traces.ping()
        checks["trace_store"] = "ok"
    except StorageError as exc:
        checks["trace_store"] = str(exc)
        ready = False
    try:
        models = await runtime.loader.catalog.list_models()
        checks["artifact_store"] = "ok"
    except StorageError as exc:
        checks["artifact_store"] = str(exc)
        models = []
        ready = False
    for name in models:
        try:
            aliases = await runtime.loader.catalog.aliases(name)
            for alias in runtime.settings.preload_aliases:
                if alias in aliases:
                    await runtime.loader.get(name, alias)
            checks[f"model:{name}"] = "ok"
        except (ServiceError, StorageError) as exc:
            checks[f"model:{name}"] = str(exc)
            ready = False
    if ready:
        return Response(orjson.dumps({"status": "ready", "checks": checks}),
                        media_type="application/json")
    body = {"type": TYPE_BASE + "not-ready", "title": "Not ready", "status": 503,
            "detail": "a store or model is unavailable", "checks": checks}
    return Response(orjson.dumps(body), status_code=503, media_type=PROBLEM_JSON)


@router.get("/metrics")
async def metrics(runtime: RuntimeDep) -> Response:
    """Prometheus text exposition."""
    runtime.metrics.models_loaded.set(len(runtime.loader.loaded()))
    return Response(runtime.metrics.render(), media_type=CONTENT_TYPE_LATEST)
