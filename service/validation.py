"""Validation of prediction records: the API envelope first, then the model's manifest."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from service.errors import FieldError
from storage.manifest import Manifest

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_CONTEXT_KEYS = 32
_UNKNOWN_LISTED = 10


@dataclass(frozen=True, slots=True)
class Envelope:
    """A record whose API envelope is valid; features not yet checked against a model."""

    request_id: str
    model: str
    version: str | None
    features: dict[str, Any] = field(repr=False)
    prediction: dict[str, Any]
    timestamp: str | None
    event_ms: int
    action: str | None
    context: dict[str, Any]


@dataclass(frozen=True, slots=True)
class FeatureRule:
    """What one manifest feature accepts."""

    name: str
    categorical: bool
    nullable: bool


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_envelope(
    raw: object, *, path: str, received_ms: int, max_string: int, traceparent: str | None
) -> Envelope | list[FieldError]:
    """Check the record's shape and the fields that do not depend on a model."""
    if not isinstance(raw, dict):
        return [FieldError(path or "body", "expected a JSON object")]
    errors: list[FieldError] = []
    at = (lambda name: f"{path}.{name}") if path else (lambda name: name)
    known = {"request_id", "model", "version", "features", "prediction", "timestamp",
             "action", "context"}
    errors.extend(FieldError(at(k), "unknown field") for k in raw if k not in known)

    request_id = raw.get("request_id")
    if not isinstance(request_id, str) or not REQUEST_ID.match(request_id):
        errors.append(FieldError(at("request_id"),
                                 "required: 1-128 characters of letters, digits and ._:-"))
    model = raw.get("model")
    if not isinstance(model, str) or not _NAME.match(model):
        errors.append(FieldError(at("model"), "required: a model name"))
    version = raw.get("version")
    if version is not None and (not isinstance(version, str | int) or isinstance(version, bool)
                                or not _NAME.match(str(version))):
        errors.append(FieldError(at("version"), "expected a version or alias name"))
    features = raw.get("features")
    if not isinstance(features, dict):
        errors.append(FieldError(at("features"), "required: an object of feature values"))
    prediction = raw.get("prediction")
    errors.extend(_check_prediction(prediction, at("prediction")))
    event_ms = received_ms
    timestamp = raw.get("timestamp")
    if timestamp is not None:
        parsed = _parse_time(timestamp)
        if parsed is None:
            errors.append(FieldError(at("timestamp"), "expected an ISO 8601 date-time"))
        else:
            event_ms = parsed
    action = raw.get("action")
    if action is not None and (not isinstance(action, str) or len(action) > max_string):
        errors.append(FieldError(at("action"), f"expected a string of at most {max_string} chars"))
    context = raw.get("context", {})
    if context is None:
        context = {}
    if not isinstance(context, dict) or len(context) > _CONTEXT_KEYS:
        errors.append(FieldError(at("context"),
                                 f"expected an object of at most {_CONTEXT_KEYS} keys"))
    else:
        for key, value in context.items():
            if isinstance(value, str) and len(value) > max_string:
                errors.append(FieldError(at(f"context.{key}"),
                                         f"string longer than {max_string} characters"))
            elif value is not None and not isinstance(value, str | int | float | bool):
                errors.append(FieldError(at(f"context.{key}"), "expected a string, number or bool"))
    if errors:
        return errors
    assert isinstance(request_id, str) and isinstance(model, str)
    assert isinstance(features, dict) and isinstance(prediction, dict)
    assert isinstance(context, dict)
    if traceparent:
        context = {**context, "traceparent": traceparent[:max_string]}
    return Envelope(
        request_id=request_id, model=model,
        version=None if version is None else str(version),
        features=features, prediction=prediction,
        timestamp=timestamp if isinstance(timestamp, str) else None,
        event_ms=event_ms, action=action if isinstance(action, str) else None,
        context=context,
    )


def _check_prediction(prediction: object, path: str) -> list[FieldError]:
    if not isinstance(prediction, dict):
        return [FieldError(path, "required: an object with score or label")]
    errors: list[FieldError] = []
    unknown = [k for k in prediction if k not in ("score", "label", "threshold")]
    errors.extend(FieldError(f"{path}.{k}", "unknown field") for k in unknown)
    if "score" not in prediction and "label" not in prediction:
        errors.append(FieldError(path, "needs score or label"))
    score = prediction.get("score")
    if score is not None and (not _is_number(score) or not math.isfinite(score)):
        errors.append(FieldError(f"{path}.score", "expected a finite number"))
    label = prediction.get("label")
    if label is not None and not isinstance(label, str | int | float | bool):
        errors.append(FieldError(f"{path}.label", "expected a string, number or bool"))
    threshold = prediction.get("threshold")
    if threshold is not None and (not _is_number(threshold) or not math.isfinite(threshold)):
        errors.append(FieldError(f"{path}.threshold", "expected a finite number"))
    return errors


def _parse_time(value: object) -> int | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def parse_time(value: object) -> int | None:
    """Parse an ISO 8601 date-time (naive = UTC) to epoch ms; None when it is not one."""
    return _parse_time(value)


def feature_rules(manifest: Manifest) -> tuple[FeatureRule, ...]:
    """Precompute the per-feature checks of a manifest."""
    return tuple(
        FeatureRule(f.name, f.type == "categorical", f.nullable) for f in manifest.features
    )


_ABSENT = object()


def _plainly_valid(features: dict[str, Any], rules: tuple[FeatureRule, ...],
                   max_string: int) -> bool:
    """Tell cheaply whether every rule's value is obviously acceptable (the common case).

    False only sends the record through the detailed checks below, which name each bad
    field; so this may refuse anything unusual but must never accept what they refuse.
    """
    get = features.get
    for rule in rules:
        value = get(rule.name, _ABSENT)
        kind = type(value)  # exact types: a bool is not an int here
        if kind is float:
            if value - value != 0.0:  # NaN or an infinity
                return False
        elif kind is int:
            continue
        elif value is None:
            if not rule.nullable:
                return False
        elif kind is not str or not rule.categorical or len(value) > max_string:
            return False
    return True


def check_features(
    features: dict[str, Any], rules: tuple[FeatureRule, ...], *, path: str, model_label: str,
    max_string: int,
) -> list[FieldError]:
    """Check presence, type and finiteness of every feature; never echo a value."""
    if len(features) == len(rules) and _plainly_valid(features, rules, max_string):
        return []
    return feature_errors(features, rules, path=path, model_label=model_label,
                          max_string=max_string)


def feature_errors(
    features: dict[str, Any], rules: tuple[FeatureRule, ...], *, path: str, model_label: str,
    max_string: int,
) -> list[FieldError]:
    """The detailed checks behind `check_features`, naming every bad field."""
    errors: list[FieldError] = []
    prefix = f"{path}.features" if path else "features"
    for rule in rules:
        if rule.name not in features:
            errors.append(FieldError(f"{prefix}.{rule.name}",
                                     f"required by {model_label} (send null if missing)"))
            continue
        value = features[rule.name]
        if value is None:
            if not rule.nullable:
                errors.append(FieldError(f"{prefix}.{rule.name}", "missing value not allowed"))
        elif rule.categorical:
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                errors.append(FieldError(f"{prefix}.{rule.name}", "expected a category"))
            elif isinstance(value, str) and len(value) > max_string:
                errors.append(FieldError(f"{prefix}.{rule.name}",
                                         f"string longer than {max_string} characters"))
            elif isinstance(value, float) and not math.isfinite(value):
                errors.append(FieldError(f"{prefix}.{rule.name}", "expected a finite value"))
        elif not _is_number(value):
            errors.append(FieldError(f"{prefix}.{rule.name}", "expected a number"))
        elif not math.isfinite(value):
            errors.append(FieldError(f"{prefix}.{rule.name}", "expected a finite number"))
    if errors or len(features) != len(rules):
        names = {r.name for r in rules}
        unknown = [name for name in features if name not in names]
        # Names are shortened and listed up to a bound: an answer never grows with junk.
        errors.extend(
            FieldError(f"{prefix}.{name[:64]}", f"not a feature of {model_label}")
            for name in unknown[:_UNKNOWN_LISTED]
        )
        if len(unknown) > _UNKNOWN_LISTED:
            errors.append(FieldError(prefix, f"{len(unknown) - _UNKNOWN_LISTED} more names "
                                             f"that are not features of {model_label}"))
    return errors
