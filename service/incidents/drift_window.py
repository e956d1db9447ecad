"""Drift of an incident's window, from the live drift windows (service/drift)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

from service.drift.queries import TRAINING, window_report
from service.drift.windows import trailing_span
from service.errors import ServiceError
from service.runtime import Runtime
from storage.drift.records import ALL_RECORDS
from storage.errors import StorageError
from storage.incidents.records import StoredIncident

logger = logging.getLogger(__name__)

_KEPT = ("status", "psi", "js", "wasserstein_norm", "missing_rate", "out_of_range_rate",
         "count")


async def incident_drift(runtime: Runtime, incident: StoredIncident,
                         versions: Sequence[str]) -> dict[str, Any]:
    """Per-version drift against training over the incident window (opened → closed/now).

    The window is rounded out to whole drift buckets. Unavailable windows (store down,
    version no longer loadable) are reported, never raised: the summary must still load.
    """
    end_ms = incident.closed_ms or time.time_ns() // 1_000_000
    length_s = max(1, math.ceil((end_ms - incident.opened_ms) / 1000))
    span = trailing_span(end_ms, length_s, runtime.settings.drift.bucket_s)
    out: dict[str, Any] = {}
    for version in versions:
        try:
            ready = await runtime.loader.get(incident.model, version)
            report = await window_report(runtime, ready, span, ALL_RECORDS, TRAINING)
        except (StorageError, ServiceError) as exc:
            logger.error("drift of %s@%s for incident %s unavailable: %s", incident.model,
                         version, incident.incident_id, exc)
            out[version] = {"status": "unavailable", "detail": str(exc)}
            continue
        features = {name: {k: v for k, v in entry.items() if k in _KEPT}
                    for name, entry in report["features"].items()}
        out[version] = {
            "window": report["window"], "baseline": report["baseline"],
            "count": report["count"], "drifting": report["drifting"],
            "warning": report["warning"],
            "prediction": {k: v for k, v in report["prediction"].items() if k in _KEPT},
            "features": dict(sorted(features.items(),
                                    key=lambda item: -(item[1].get("psi") or 0.0))),
        }
    return out
