"""The `drift` block of a trace, computed when the trace is read (never stored).

The stored trace is immutable; the block describes the trailing window (default 1 h)
ending at the decision's event time, so records that arrive late still count.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import orjson

from explainers.drift_rules import DRIFT
from service.drift.queries import LATEST_MS, TRAINING, window_report
from service.drift.windows import trailing_span
from service.errors import ServiceError
from service.runtime import Runtime
from service.validation import parse_time
from storage.drift.records import ALL_RECORDS
from storage.errors import StorageError

logger = logging.getLogger(__name__)

_KEPT = ("status", "reasons", "psi", "js", "wasserstein_norm", "missing_rate",
         "out_of_range_rate", "count", "last_seen")


async def attach_drift(runtime: Runtime, body: bytes) -> bytes:
    """Return the trace JSON with its `drift` block spliced in (null if unavailable)."""
    document = orjson.loads(body)
    try:
        block = await drift_block(runtime, document)
    except (StorageError, ServiceError) as exc:
        # The trace itself must still be served at 3 a.m.: the drift context is extra.
        runtime.drift.metrics.context_errors.inc()
        logger.error("drift context of %s unavailable: %s", document.get("request_id"), exc)
        block = None
    if "drift" in document:
        document["drift"] = block
        return orjson.dumps(document)
    # Splice instead of re-serialising: the stored bytes are served as they are.
    return body.rstrip()[:-1] + b',"drift":' + orjson.dumps(block) + b"}"


async def drift_block(runtime: Runtime, document: dict[str, Any]) -> dict[str, Any] | None:
    """Feature statuses of the decision's trailing window, top-attributed first."""
    model = document.get("model") or {}
    event_ms = parse_time(document.get("timestamp"))
    if event_ms is None or "name" not in model or "version" not in model:
        return None
    settings = runtime.settings.drift
    if not settings.trace_window_s * 1000 <= event_ms < LATEST_MS:
        return None
    ready = await runtime.loader.get(str(model["name"]), str(model["version"]))
    span = trailing_span(event_ms + 1, settings.trace_window_s, settings.bucket_s)

    async def compute() -> dict[str, Any]:
        # Cached already trimmed to the block's fields: every trace read reuses them.
        report = await window_report(runtime, ready, span, ALL_RECORDS, TRAINING)
        return {"window": report["window"],
                "features": {name: {k: v for k, v in entry.items() if k in _KEPT}
                             for name, entry in report["features"].items()},
                "prediction": {k: v for k, v in report["prediction"].items() if k in _KEPT}}

    report = await runtime.drift.remember(
        ("trace", ready.manifest.name, ready.manifest.version, ready.manifest_sha256, span),
        compute)
    positions = runtime.drift.positions(ready)
    explanation = document.get("explanation") or {}
    attributions = explanation.get("attributions") or {}
    order = sorted(report["features"], key=lambda f: -_magnitude(attributions.get(f)))
    values = document.get("features") or {}
    features = {}
    for name in order:
        entry = dict(report["features"][name])
        entry.update(positions.of(name, values.get(name)))
        features[name] = entry
    top = [t.get("feature") for t in explanation.get("top") or [] if isinstance(t, dict)]
    prediction = dict(report["prediction"])
    score = ((document.get("prediction") or {}).get("recomputed") or {}).get("score")
    prediction["baseline_percentile"] = positions.score(score)
    return {
        "window": report["window"], "baseline": TRAINING, "features": features,
        "prediction": prediction,
        "top_attributed_drifting": [f for f in top if f in features
                                    and features[f]["status"] == DRIFT],
    }


def _magnitude(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return abs(float(value))
    return -1.0
