"""The fleet page: every model, its aliased versions' worst drift status, open incidents."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from explainers.errors import ExplainerError
from service.drift.queries import TRAINING, model_drift
from service.errors import ServiceError
from service.runtime import Runtime
from service.ui.incident_source import open_incidents
from service.ui.status import StatusLook, look, worst
from storage.errors import StorageError

FLEET_WINDOW = "1h"


@dataclass(frozen=True, slots=True)
class FleetModel:
    """One row of the fleet page."""

    name: str
    aliases: dict[str, str]
    versions: list[str]
    drift: list[dict[str, Any]]
    worst: StatusLook
    incidents: list[dict[str, Any]] | None
    """Open incidents of the model; None when incidents cannot be read."""


async def version_drift(runtime: Runtime, name: str, version: str) -> dict[str, Any]:
    """Worst status of the last hour of one version, and which features drift or warn."""
    try:
        report = await model_drift(runtime, name, version=version, window=FLEET_WINDOW,
                                   until=None, segment=None, baseline=TRAINING)
    except (ServiceError, StorageError, ExplainerError) as exc:
        return {"version": version, "status": look(None), "error": str(exc),
                "drifting": [], "warning": [], "count": None}
    features = report.get("features") or {}
    statuses = [e.get("status") for e in features.values() if isinstance(e, dict)]
    prediction = report.get("prediction") or {}
    return {
        "version": version,
        "status": worst([*statuses, prediction.get("status")]),
        "prediction": look(prediction.get("status")),
        "drifting": [n for n, e in features.items() if look(e.get("status")).key == "drift"],
        "warning": [n for n, e in features.items() if look(e.get("status")).key == "warn"],
        "count": report.get("count"), "error": None,
    }


async def fleet_view(runtime: Runtime) -> dict[str, Any]:
    """The template context of the fleet page."""
    catalog = runtime.loader.catalog
    incidents = await open_incidents(runtime, model=None)
    models = []
    for name in await catalog.list_models():
        aliases = await catalog.aliases(name)
        versions = await catalog.list_versions(name)
        shown = sorted(set(aliases.values())) or versions[-1:]
        drift = [await version_drift(runtime, name, v) for v in shown]
        models.append(FleetModel(
            name, aliases, versions, drift, worst(d["status"].key for d in drift),
            None if incidents is None else [i for i in incidents if i.get("model") == name]))
    # Worst first: the page is read top-down at 3 a.m.
    models.sort(key=lambda m: (-m.worst.rank, m.name))
    return {"models": models, "window": FLEET_WINDOW,
            "incidents_available": incidents is not None}
