"""Turns validated records plus a model's explanation into masked trace documents."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson

from explainers.prediction_links import predict_and_explain
from explainers.types import Explanation, Predictions, Task
from service.counterfactuals import CounterfactualAsk, counterfactual_sections
from service.model_loader import ReadyModel
from service.settings import CounterfactualSettings
from service.validation import Envelope
from storage.records import StoredTrace

TRACE_VERSION = 1


@dataclass(frozen=True, slots=True)
class TraceRequest:
    """One record to explain, with why and when it was received."""

    envelope: Envelope
    reason: str
    policy: str
    received_ms: int
    counterfactuals: CounterfactualAsk | None = None
    """Counterfactuals asked by the caller or by the sampling decision (None: no search)."""
    incidents: tuple[str, ...] = ()
    """Incidents the trace is linked to when stored (incident mode, attach, backfill)."""


@dataclass(frozen=True, slots=True)
class TraceOptions:
    """Presentation and tolerance settings of trace documents."""

    top_k: int
    mismatch_tolerance: float
    counterfactuals: CounterfactualSettings = field(default_factory=CounterfactualSettings)


def iso_ms(epoch_ms: int) -> str:
    """Format epoch milliseconds as ISO 8601 UTC with a Z suffix."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def build_traces(ready: ReadyModel, requests: Sequence[TraceRequest],
                 options: TraceOptions) -> list[StoredTrace]:
    """Score and explain the records in one batch and render their masked traces."""
    started = time.perf_counter()
    matrix = ready.encoder.encode([r.envelope.features for r in requests])
    # one model call where the explainer can share it (its additivity check needs one)
    predictions, explanation = predict_and_explain(ready.model, ready.explainer, matrix)
    per_row_ms = (time.perf_counter() - started) * 1000 / max(len(requests), 1)
    traces = []
    for i, request in enumerate(requests):
        document = _trace_document(ready, request, i, predictions, explanation, options,
                                   per_row_ms)
        # Asked by the caller, or by the sampling policy's rule (or incident mode).
        ask = request.counterfactuals
        if ask is not None:
            document.update(counterfactual_sections(
                ready, matrix[i], ask, features=request.envelope.features,
                prediction=request.envelope.prediction, settings=options.counterfactuals))
        traces.append(StoredTrace(
            request_id=request.envelope.request_id, model=ready.manifest.name,
            version=ready.manifest.version, reason=request.reason,
            event_ms=request.envelope.event_ms,
            body=orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY),
            incidents=request.incidents,
        ))
    return traces


def _trace_document(ready: ReadyModel, request: TraceRequest, i: int, predictions: Predictions,
                    explanation: Explanation, options: TraceOptions,
                    compute_ms: float) -> dict[str, Any]:
    envelope = request.envelope
    manifest = ready.manifest
    masker = ready.masker
    masked = masker.mask_features(envelope.features)
    recomputed = _recomputed(ready, predictions, i, envelope.prediction)
    attributions = explanation.attributions(i)
    top = [
        {"feature": name, "attribution": value, "value": masked.get(name)}
        for name, value in explanation.top(i, options.top_k)
    ]
    block: dict[str, Any] = {
        "method": explanation.method,
        "output_space": explanation.output_space.value,
        "base_value": float(explanation.base_values[i]),
        "output_value": float(explanation.outputs[i]),
        "attributions": attributions,
        "top": top,
        "compute_ms": round(compute_ms, 3),
    }
    if explanation.class_indices is not None:
        class_index = int(explanation.class_indices[i])
        block["explained_class"] = manifest.classes[class_index]
    return {
        "request_id": envelope.request_id,
        "trace_version": TRACE_VERSION,
        "model": {"name": manifest.name, "version": manifest.version, "flavor": manifest.flavor,
                  "task": manifest.task, "manifest_sha256": ready.manifest_sha256},
        "received_at": iso_ms(request.received_ms),
        "timestamp": iso_ms(envelope.event_ms),
        "context": envelope.context,
        "action": envelope.action,
        "features": masked,
        "feature_vector_hmac": masker.fingerprint(
            [envelope.features.get(f.name) for f in manifest.features]
        ),
        "prediction": {
            "logged": envelope.prediction,
            "recomputed": recomputed,
            "mismatch": _mismatch(envelope.prediction, recomputed, options.mismatch_tolerance),
        },
        "sampling": {"reason": request.reason, "policy": request.policy},
        "explanation": block,
        "counterfactuals": [],
        "incidents": list(request.incidents),
    }


def _recomputed(ready: ReadyModel, predictions: Predictions, i: int,
                logged: dict[str, Any]) -> dict[str, Any]:
    task = ready.schema.task
    score = float(predictions.scores[i])
    if task is Task.REGRESSION:
        return {"score": score}
    classes = ready.manifest.classes
    if task is Task.BINARY:
        threshold = float(logged.get("threshold", 0.5))
        label = classes[1] if score >= threshold else classes[0]
        return {"score": score, "label": label, "threshold": threshold}
    assert predictions.class_indices is not None and predictions.probabilities is not None
    label = classes[int(predictions.class_indices[i])]
    probabilities = {str(c): float(p) for c, p in zip(classes, predictions.probabilities[i],
                                                        strict=True)}
    return {"score": score, "label": label, "probabilities": probabilities}


def _mismatch(logged: dict[str, Any], recomputed: dict[str, Any], tolerance: float) -> bool:
    logged_score = logged.get("score")
    if logged_score is not None and not np.isclose(
        float(logged_score), recomputed["score"], rtol=tolerance, atol=tolerance
    ):
        return True
    logged_label = logged.get("label")
    if logged_label is not None and "label" in recomputed:
        return _canonical_label(logged_label) != _canonical_label(recomputed["label"])
    return False


def _canonical_label(label: object) -> str:
    if isinstance(label, bool):
        return "1" if label else "0"
    if isinstance(label, float) and label.is_integer():
        return str(int(label))
    return str(label)
