"""The trace page: a stored (already masked) trace with its drift context, shaped for a page.

Every section besides the request ID is optional: traces written by older or newer
versions, or before the drift/counterfactual/incident features existed, still render.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

from service.drift.trace_context import attach_drift
from service.runtime import Runtime
from service.ui.status import StatusLook, look
from service.ui.waterfall import WaterfallStep, order_steps, waterfall_svg


@dataclass(frozen=True, slots=True)
class FeatureRow:
    """One row of the waterfall's table: the same numbers as the chart."""

    feature: str
    value: object
    attribution: float
    running: float
    status: StatusLook | None
    psi: float | None
    percentile: float | None


@dataclass(frozen=True, slots=True)
class ChangeRow:
    """One counterfactual: its feature changes (masked like the inputs) and its outcome."""

    changes: list[tuple[str, object, object]]
    score: object
    label: object
    n_changed: object


async def load_trace(runtime: Runtime, request_id: str) -> dict[str, Any] | None:
    """The trace exactly as `GET /v1/traces/{id}` serves it, or None when unknown."""
    stored = await runtime.traces.get_trace(request_id)
    if stored is None:
        return None
    document: dict[str, Any] = orjson.loads(await attach_drift(runtime, stored.body))
    listed = [str(i) for i in document.get("incidents") or []]
    document["incidents"] = listed + [i for i in stored.incidents if i not in listed]
    return document


def _finite(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) \
            and math.isfinite(value):
        return float(value)
    return None


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def trace_view(document: dict[str, Any]) -> dict[str, Any]:
    """The template context of one trace."""
    explanation = _dict(document.get("explanation"))
    drift = document.get("drift") if isinstance(document.get("drift"), dict) else None
    drift_features = _dict(drift.get("features")) if drift else {}
    values = _dict(document.get("features"))
    attributions = {str(k): float(v) for k, v in _dict(explanation.get("attributions")).items()
                    if _finite(v) is not None}
    steps = order_steps([
        WaterfallStep(name, _value_text(values.get(name)), value,
                      look(_dict(drift_features.get(name)).get("status")) if drift else None)
        for name, value in attributions.items()])
    base = _finite(explanation.get("base_value"))
    output = _finite(explanation.get("output_value"))
    if output is None and base is not None:
        output = base + math.fsum(attributions.values())
    chart = None
    if base is not None and output is not None and steps:
        chart = waterfall_svg(base, steps, output,
                              output_space=str(explanation.get("output_space", "")))
    return {
        "trace": document,
        "model": _dict(document.get("model")),
        "context": _dict(document.get("context")),
        "prediction": _dict(document.get("prediction")),
        "sampling": _dict(document.get("sampling")),
        "explanation": explanation,
        "waterfall": chart,
        "rows": _rows(base, steps, values, drift_features, drift is not None),
        "base_value": base, "output_value": output,
        "drift": drift,
        "drift_prediction": _dict(drift.get("prediction")) if drift else {},
        "counterfactuals": _counterfactuals(document.get("counterfactuals")),
        "counterfactual_search": _dict(document.get("counterfactual_search")),
        "incidents": [str(i) for i in document.get("incidents") or []],
    }


def _value_text(value: object) -> str:
    if value is None:
        return "missing"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _rows(base: float | None, steps: list[WaterfallStep], values: dict[str, Any],
          drift_features: dict[str, Any], has_drift: bool) -> list[FeatureRow]:
    running = base or 0.0
    rows = []
    for step in steps:
        running += step.attribution
        entry = _dict(drift_features.get(step.feature))
        rows.append(FeatureRow(
            feature=step.feature, value=values.get(step.feature, step.value),
            attribution=step.attribution, running=running,
            status=look(entry.get("status")) if has_drift else None,
            psi=_finite(entry.get("psi")), percentile=_finite(entry.get("baseline_percentile"))))
    return rows


def _counterfactuals(raw: object) -> list[ChangeRow]:
    if not isinstance(raw, list):
        return []
    rows = []
    for item in raw:
        if not isinstance(item, dict):
            continue
        changes = [(str(name), _dict(change).get("from"), _dict(change).get("to"))
                   for name, change in _dict(item.get("changes")).items()]
        rows.append(ChangeRow(changes, item.get("score"), item.get("label"),
                              item.get("n_changed", len(changes))))
    return rows
