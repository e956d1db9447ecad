"""GET /v1/models/{name}/drift: per-feature, prediction and label drift of a window."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from service.deps import ReadCaller, RuntimeDep
from service.drift.queries import TRAINING, model_drift

router = APIRouter(tags=["read"])


@router.get("/v1/models/{name}/drift")
async def get_drift(
    name: str, runtime: RuntimeDep, caller: ReadCaller,
    version: str | None = None,
    window: Annotated[str, Query(max_length=16)] = "1h",
    until: Annotated[str | None, Query(max_length=64)] = None,
    segment: Annotated[str | None, Query(max_length=300)] = None,
    baseline: Annotated[str, Query(max_length=128)] = TRAINING,
) -> dict[str, Any]:
    """Drift of the window ending now (or at `until`) against training, the previous
    window, or another version's window (`baseline=<version or alias>`)."""
    return await model_drift(runtime, name, version=version, window=window, until=until,
                             segment=segment, baseline=baseline)
