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
from service.spooling import check_spool
from storage.errors import StorageError

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(runtime: RuntimeDep) -> Response:
    """Stores reachable and aliased models loadable; 503 problem otherwise.

    `degraded` (still 200): the trace store is down but the outage spool takes records,
    or spooled records are waiting to be replayed (`checks.spool` shows the depth).
    """
    checks: dict[str, Any] = {}
    ready = True
    store_down = False
    try:
        await runtime.traces.ping()
        checks["trace_store"] = "ok"
    except StorageError as exc:
        checks["trace_store"] = str(exc)
        store_down = True
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
    fallbacks = runtime.loader.fallbacks()
    for (name, _alias), reason in fallbacks.items():
        # Degraded, not unready: every replica would fail alike and take serving down.
        checks[f"model:{name}"] = reason
    spool = await check_spool(runtime)
    if spool is not None:
        checks["spool"] = spool.as_json()
    if store_down and (spool is None or not spool.has_room):
        ready = False
    if ready:
        degraded = (store_down or (spool is not None and spool.records > 0)
                    or bool(fallbacks))
        return Response(orjson.dumps({"status": "degraded" if degraded else "ready",
                                      "checks": checks}), media_type="application/json")
    body = {"type": TYPE_BASE + "not-ready", "title": "Not ready", "status": 503,
            "detail": "a store or model is unavailable", "checks": checks}
    return Response(orjson.dumps(body), status_code=503, media_type=PROBLEM_JSON)


@router.get("/metrics")
async def metrics(runtime: RuntimeDep) -> Response:
    """Prometheus text exposition."""
    runtime.metrics.models_loaded.set(len(runtime.loader.loaded()))
    return Response(runtime.metrics.render(), media_type=CONTENT_TYPE_LATEST)
