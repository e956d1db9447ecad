"""Canary and shadow diffs: one record explained under two versions, attributions compared."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from explainers.types import Explanation, Predictions, Task
from service.errors import FieldError, RecordInvalid, RecordNotFound
from service.ingest import now_ms, replay_envelope
from service.model_loader import ReadyModel
from service.runtime import Runtime
from service.validation import Envelope, check_features, parse_envelope

COMPARE = "compare"


@dataclass(frozen=True, slots=True)
class SideResult:
    """One version's prediction and explanation of the compared rows."""

    asked: str
    ready: ReadyModel
    predictions: Predictions
    explanation: Explanation


def parse_compare(spec: str) -> tuple[str, str]:
    """`production,canary` (or two versions) → the two names, in order."""
    parts = [part.strip() for part in spec.split(",")]
    if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
        raise RecordInvalid([FieldError(COMPARE, "expected two different versions or aliases, "
                                                 "e.g. compare=production,canary")])
    return parts[0], parts[1]


def explain_sides(first: tuple[str, ReadyModel], second: tuple[str, ReadyModel],
                  rows: Sequence[Mapping[str, object]]) -> tuple[SideResult, SideResult]:
    """Score and explain the same rows under both versions (CPU-bound: run in a thread).

    For multiclass models with the same classes, the second version explains the class
    the first one predicted, so both attributions answer the same question.
    """
    results: list[SideResult] = []
    class_indices = None
    for asked, ready in (first, second):
        matrix = ready.encoder.encode(rows)
        predictions = ready.model.predict(matrix)
        explanation = ready.explainer.explain(matrix, class_indices=class_indices)
        if (ready.schema.task is Task.MULTICLASS and class_indices is None
                and first[1].schema.classes == second[1].schema.classes):
            class_indices = explanation.class_indices
        results.append(SideResult(asked, ready, predictions, explanation))
    return results[0], results[1]


def feature_union(first: ReadyModel, second: ReadyModel) -> list[str]:
    """The first version's features in order, then the second's extra ones."""
    names = list(first.schema.feature_names)
    return names + [n for n in second.schema.feature_names if n not in set(names)]


def attribution_differences(first: SideResult, second: SideResult, *, row: int,
                            masked: Mapping[str, object]) -> list[dict[str, Any]]:
    """Per-feature attributions of both versions and their difference, largest first."""
    a = first.explanation.attributions(row)
    b = second.explanation.attributions(row)
    entries: list[dict[str, Any]] = []
    for name in feature_union(first.ready, second.ready):
        left, right = a.get(name), b.get(name)
        entries.append({
            "feature": name, "value": masked.get(name),
            "attributions": {first.asked: left, second.asked: right},
            "difference": (right or 0.0) - (left or 0.0),
        })
    entries.sort(key=lambda e: -abs(e["difference"]))
    return entries


def masked_union(features: Mapping[str, object],
                 versions: Sequence[ReadyModel]) -> dict[str, object]:
    """Feature values as shown: masked when any of the versions masks the feature."""
    shown = dict(features)
    for ready in versions:
        for name in ready.masker.masked_features & shown.keys():
            shown[name] = ready.masker.mask_value(name, features[name])
    return shown


def side_json(side: SideResult, row: int, prediction: Mapping[str, Any]) -> dict[str, Any]:
    """One version's block of a comparison."""
    explanation = side.explanation
    manifest = side.ready.manifest
    return {
        "as": side.asked, "version": manifest.version,
        "manifest_sha256": side.ready.manifest_sha256, "method": explanation.method,
        "output_space": explanation.output_space.value,
        "base_value": float(explanation.base_values[row]),
        "output_value": float(explanation.outputs[row]),
        "prediction": _prediction(side, row, prediction),
        "attributions": explanation.attributions(row),
    }


def _prediction(side: SideResult, row: int, logged: Mapping[str, Any]) -> dict[str, Any]:
    score = float(side.predictions.scores[row])
    task = side.ready.schema.task
    classes = side.ready.manifest.classes
    if task is Task.REGRESSION:
        return {"score": score}
    if task is Task.BINARY:
        threshold = float(logged.get("threshold", 0.5))
        return {"score": score, "label": classes[1] if score >= threshold else classes[0]}
    assert side.predictions.class_indices is not None
    return {"score": score, "label": classes[int(side.predictions.class_indices[row])]}


async def compare_versions(runtime: Runtime, body: dict[str, Any], spec: str) -> dict[str, Any]:
    """Explain `{request_id}` (logged) or a full record under two versions; nothing is stored."""
    first_name, second_name = parse_compare(spec)
    envelope = await _envelope(runtime, body)
    first = await runtime.loader.get(envelope.model, first_name)
    second = await runtime.loader.get(envelope.model, second_name)
    limits = runtime.settings.limits
    errors: list[FieldError] = []
    for ready in (first, second):
        errors += check_features(envelope.features, ready.rules, path="",
                                 model_label=ready.label, max_string=limits.string_chars)
    if errors:
        raise RecordInvalid(errors)
    a, b = await asyncio.to_thread(explain_sides, (first_name, first), (second_name, second),
                                   [envelope.features])
    masked = masked_union(envelope.features, (first, second))
    return {
        "request_id": envelope.request_id, "model": envelope.model,
        "compare": [first_name, second_name],
        "versions": [side_json(a, 0, envelope.prediction), side_json(b, 0, envelope.prediction)],
        "comparable": a.explanation.output_space == b.explanation.output_space,
        "output_difference": float(b.explanation.outputs[0] - a.explanation.outputs[0]),
        "differences": attribution_differences(a, b, row=0, masked=masked),
    }


def aggregate_differences(first: SideResult, second: SideResult) -> list[dict[str, Any]]:
    """Mean and mean |difference| per feature over every compared row, largest first."""
    names = feature_union(first.ready, second.ready)
    index_a = {n: j for j, n in enumerate(first.explanation.feature_names)}
    index_b = {n: j for j, n in enumerate(second.explanation.feature_names)}
    rows = len(first.explanation.values)
    entries: list[dict[str, Any]] = []
    for name in names:
        left = (first.explanation.values[:, index_a[name]] if name in index_a
                else np.zeros(rows))
        right = (second.explanation.values[:, index_b[name]] if name in index_b
                 else np.zeros(rows))
        diff = right - left
        entries.append({"feature": name, "mean_difference": float(diff.mean()),
                        "mean_abs_difference": float(np.abs(diff).mean())})
    entries.sort(key=lambda e: -e["mean_abs_difference"])
    return entries


async def _envelope(runtime: Runtime, body: dict[str, Any]) -> Envelope:
    if set(body) == {"request_id"} and isinstance(body["request_id"], str):
        record = await runtime.records.get_record(body["request_id"])
        if record is None:
            raise RecordNotFound(body["request_id"])
        return await replay_envelope(runtime, record)
    limits = runtime.settings.limits
    parsed = parse_envelope(body, path="", received_ms=now_ms(), max_string=limits.string_chars,
                            traceparent=None)
    if isinstance(parsed, list):
        raise RecordInvalid(parsed)
    return parsed
