"""Counterfactuals in traces: parse the caller's ask, check it against the manifest, run the
search, and render masked results (docs/counterfactuals.md)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from explainers.counterfactual import check_constraints
from explainers.counterfactual_types import (
    ClassTarget,
    Constraints,
    CounterfactualRequest,
    CounterfactualResult,
    Direction,
    IntervalTarget,
    LabelTarget,
    Relation,
    Target,
    parse_relation,
)
from explainers.errors import CounterfactualRequestInvalid, ExplainerError
from explainers.types import FloatVector
from service.errors import FieldError, RecordInvalid
from service.model_loader import ReadyModel
from service.settings import CounterfactualSettings, LimitSettings
from storage.manifest import CategoryValue

logger = logging.getLogger(__name__)

FIELD = "counterfactuals"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TargetOverride(_Strict):
    """`label`: the class to reach (binary, multiclass); `min`/`max`: regression interval."""

    label: CategoryValue | None = None
    min: float | None = None
    max: float | None = None


class RangeOverride(_Strict):
    """A permitted range; an omitted bound keeps the manifest's."""

    min: float | None = None
    max: float | None = None


class CounterfactualOverrides(_Strict):
    """The optional `counterfactuals` object of a POST /v1/explain body."""

    target: TargetOverride | None = None
    immutable: list[str] = Field(default_factory=list)
    """Features that must not change, on top of the manifest's immutable ones."""
    mutable: list[str] = Field(default_factory=list)
    """Manifest-immutable features this call may change after all."""
    ranges: dict[str, RangeOverride] = Field(default_factory=dict)
    categories: dict[str, list[CategoryValue]] = Field(default_factory=dict)
    directions: dict[str, Literal["any", "increase", "decrease"]] = Field(default_factory=dict)
    constraints: list[str] | None = None
    """Cross-feature constraints (`debt <= credit_limit`); replaces the manifest's list."""
    weights: dict[str, float] = Field(default_factory=dict)
    """Cost weights of features (replace the manifest's `cost`)."""
    max_changes: int | None = Field(default=None, ge=1)


@dataclass(frozen=True, slots=True)
class CounterfactualAsk:
    """How many counterfactuals one explanation asks for, and its overrides."""

    count: int
    overrides: CounterfactualOverrides = field(default_factory=CounterfactualOverrides,
                                               repr=False)


def parse_ask(count: int | None, raw: object, *, limits: LimitSettings,
              settings: CounterfactualSettings) -> CounterfactualAsk | None:
    """Read `?counterfactuals=N` and the body's `counterfactuals` object (None: not asked)."""
    if count is None and raw is None:
        return None
    if count is not None and count > limits.counterfactuals:
        raise RecordInvalid([FieldError(FIELD, f"at most {limits.counterfactuals} per call")])
    try:
        overrides = CounterfactualOverrides.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        # pydantic's `msg` never carries the input value (that may be a masked feature)
        raise RecordInvalid([
            FieldError(".".join([FIELD, *(str(p) for p in err["loc"])]), err["msg"])
            for err in exc.errors()
        ]) from None
    wanted = count if count is not None else min(settings.default_count, limits.counterfactuals)
    return CounterfactualAsk(wanted, overrides) if wanted > 0 else None


def build_request(ready: ReadyModel, ask: CounterfactualAsk, prediction: Mapping[str, Any],
                  settings: CounterfactualSettings) -> CounterfactualRequest:
    """Merge the manifest's constraints with the ask's overrides; raise RecordInvalid."""
    overrides = ask.overrides
    manifest = ready.manifest
    names = {f.name for f in manifest.features}
    _check_names(overrides.immutable, names, "immutable")
    _check_names(overrides.mutable, names, "mutable")
    immutable = ({f.name for f in manifest.features if f.immutable} - set(overrides.mutable)
                 ) | set(overrides.immutable)
    ranges: dict[str, tuple[float | None, float | None]] = {
        f.name: (f.min, f.max) for f in manifest.features
        if f.type == "numeric" and (f.min is not None or f.max is not None)
    }
    for name, bounds in overrides.ranges.items():
        low, high = ranges.get(name, (None, None))
        ranges[name] = (low if bounds.min is None else bounds.min,
                        high if bounds.max is None else bounds.max)
    directions = {f.name: Direction(f.direction) for f in manifest.features}
    directions.update({k: Direction(v) for k, v in overrides.directions.items()})
    costs = {f.name: f.cost for f in manifest.features}
    costs.update(overrides.weights)
    texts = manifest.constraints if overrides.constraints is None else overrides.constraints
    constraints = Constraints(
        immutable=frozenset(immutable), ranges=ranges,
        categories={k: tuple(v) for k, v in overrides.categories.items()},
        directions=directions, relations=_relations(texts, overrides.constraints is not None),
        costs=costs)
    try:
        check_constraints(ready.schema, constraints)
    except CounterfactualRequestInvalid as exc:
        raise RecordInvalid([FieldError(f"{FIELD}.{exc.field}", exc.reason)]) from None
    return CounterfactualRequest(
        target=_target(ready, overrides.target, prediction), constraints=constraints,
        count=ask.count, budget=settings.budget,
        max_changes=overrides.max_changes or settings.max_changes)


def _check_names(names: list[str], known: set[str], where: str) -> None:
    errors = [FieldError(f"{FIELD}.{where}[{i}]", "not a feature of the model")
              for i, name in enumerate(names) if name not in known]
    if errors:
        raise RecordInvalid(errors)


def _relations(texts: list[str], from_request: bool) -> tuple[Relation, ...]:
    relations = []
    for index, text in enumerate(texts):
        try:
            relations.append(parse_relation(text))
        except ValueError as exc:
            where = f"{FIELD}.constraints[{index}]" if from_request else "manifest.constraints"
            raise RecordInvalid([FieldError(where, str(exc))]) from None
    return tuple(relations)


def _target(ready: ReadyModel, target: TargetOverride | None,
            prediction: Mapping[str, Any]) -> Target:
    task = ready.schema.task.value
    target = target or TargetOverride()
    at = f"{FIELD}.target"
    if task == "regression":
        if target.label is not None:
            raise RecordInvalid([FieldError(f"{at}.label", "a regression model takes min/max")])
        if target.min is None and target.max is None:
            raise RecordInvalid([FieldError(at, "a regression model needs a target interval "
                                                "{min, max}")])
        if target.min is not None and target.max is not None and target.min > target.max:
            raise RecordInvalid([FieldError(at, "min is above max")])
        return IntervalTarget(target.min, target.max)
    if target.min is not None or target.max is not None:
        raise RecordInvalid([FieldError(at, "min/max are for regression models; use label")])
    index = None
    if target.label is not None:
        classes = [_canonical(c) for c in ready.manifest.classes]
        if _canonical(target.label) not in classes:
            raise RecordInvalid([FieldError(f"{at}.label", "not a class of the model")])
        index = classes.index(_canonical(target.label))
    if task == "multiclass":
        return ClassTarget(index)
    threshold = prediction.get("threshold", 0.5)
    return LabelTarget(None if index is None else index == 1, float(threshold))


def _canonical(label: object) -> str:
    if isinstance(label, bool):
        return "1" if label else "0"
    if isinstance(label, float) and label.is_integer():
        return str(int(label))
    return str(label)


def counterfactual_sections(ready: ReadyModel, row: FloatVector, ask: CounterfactualAsk, *,
                            features: Mapping[str, Any], prediction: Mapping[str, Any],
                            settings: CounterfactualSettings) -> dict[str, Any]:
    """Search and render the trace's `counterfactuals` and `counterfactual_search` blocks."""
    try:
        request = build_request(ready, ask, prediction, settings)
        result = ready.counterfactuals.get().search(row, request)
    except (ExplainerError, RecordInvalid) as exc:
        # A sampled trace keeps its attributions when the search cannot run; explicit
        # asks were checked before (their errors are 422 problems).
        logger.warning("counterfactual search for %s failed: %s", ready.label,
                       type(exc).__name__)
        return {"counterfactuals": [],
                "counterfactual_search": {"status": "error", "reason": type(exc).__name__,
                                          "requested": ask.count, "found": 0}}
    return {"counterfactuals": render_counterfactuals(ready, result, features),
            "counterfactual_search": _search_block(result)}


def render_counterfactuals(ready: ReadyModel, result: CounterfactualResult,
                           features: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Counterfactuals as trace entries, every value masked like the inputs.

    `from` is the record's own value, masked exactly as in the trace's `features`.
    """
    masker = ready.masker
    return [
        {"changes": {name: {"from": masker.mask_value(name, features.get(name, before)),
                            "to": masker.mask_value(name, after)}
                     for name, (before, after) in cf.changes.items()},
         "score": cf.score, "label": cf.label, "n_changed": cf.n_changed,
         "distance": _rounded(cf.distance),
         "plausibility": None if cf.plausibility is None else _rounded(cf.plausibility)}
        for cf in result.counterfactuals
    ]


def _search_block(result: CounterfactualResult) -> dict[str, Any]:
    return {"status": result.status.value, "reason": result.reason,
            "method": result.method, "target": dict(result.target),
            "requested": result.requested, "found": len(result.counterfactuals),
            "evaluations": result.evaluations, "budget": result.budget,
            "rejected": result.rejected, "compute_ms": round(result.compute_ms, 3)}


def _rounded(value: float) -> float:
    return float(np.round(value, 6))
