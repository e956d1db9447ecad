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
from explainers.drift_stats import baseline_percentile
from service.drift.queries import LATEST_MS, TRAINING, window_report
from service.drift.windows import trailing_span
from service.errors import ServiceError
from service.model_loader import ReadyModel
from service.runtime import Runtime
from service.validation import parse_time
from storage.drift.records import ALL_RECORDS
from storage.errors import StorageError
from storage.manifest import CategoricalBaseline, NumericBaseline

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
    explanation = document.get("explanation") or {}
    attributions = explanation.get("attributions") or {}
    order = sorted(report["features"], key=lambda f: -_magnitude(attributions.get(f)))
    values = document.get("features") or {}
    features = {}
    for name in order:
        entry = dict(report["features"][name])
        entry.update(_position(ready, name, values.get(name)))
        features[name] = entry
    top = [t.get("feature") for t in explanation.get("top") or [] if isinstance(t, dict)]
    prediction = dict(report["prediction"])
    score = ((document.get("prediction") or {}).get("recomputed") or {}).get("score")
    prediction["baseline_percentile"] = _score_percentile(ready, score)
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


def _position(ready: ReadyModel, name: str, value: object) -> dict[str, Any]:
    """The decision's own value against the baseline; withheld for masked features."""
    profile = ready.manifest.baseline.features.get(name)
    if name in ready.masker.masked_features or value is None:
        key = "baseline_frequency" if isinstance(profile, CategoricalBaseline) \
            else "baseline_percentile"
        return {key: None}
    if isinstance(profile, NumericBaseline):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return {"baseline_percentile": None}
        edges = profile.fine_edges or profile.edges
        proportions = profile.fine_proportions or profile.proportions
        share = baseline_percentile(edges, proportions, float(value))
        return {"baseline_percentile": None if math.isnan(share) else round(share, 4)}
    if isinstance(profile, CategoricalBaseline):
        text = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
        return {"baseline_frequency": profile.frequencies.get(text)}
    return {}


def _score_percentile(ready: ReadyModel, score: object) -> float | None:
    if isinstance(score, bool) or not isinstance(score, int | float):
        return None
    baseline = ready.manifest.baseline.score
    share = baseline_percentile(baseline.fine_edges or baseline.edges,
                                baseline.fine_proportions or baseline.proportions, float(score))
    return None if math.isnan(share) else round(share, 4)
