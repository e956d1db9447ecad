"""Counterfactual requests and results: what must change for a decision to flip.

Values in a request's category lists and in a result's `changes` are raw feature values,
possibly of masked features: they are kept out of `repr` and the caller masks them
before anything leaves the process.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from explainers.types import CategoryValue, FloatVector


class Direction(StrEnum):
    """The way a feature may move in a counterfactual."""

    ANY = "any"
    INCREASE = "increase"
    DECREASE = "decrease"


@dataclass(frozen=True, slots=True)
class LabelTarget:
    """Binary: reach a label at the decision threshold (score >= threshold is positive).

    `positive=None` asks for the label opposite to the query's own.
    """

    positive: bool | None = None
    threshold: float = 0.5


@dataclass(frozen=True, slots=True)
class ClassTarget:
    """Multiclass: make `class_index` the predicted class (None: any class but the current)."""

    class_index: int | None = None


@dataclass(frozen=True, slots=True)
class IntervalTarget:
    """Regression: bring the predicted value into [low, high] (either bound may be open)."""

    low: float | None = None
    high: float | None = None


Target = LabelTarget | ClassTarget | IntervalTarget


@dataclass(frozen=True, slots=True)
class Relation:
    """A cross-feature constraint `left <= right` (`<` when strict) between numeric features.

    It binds a counterfactual that changes either feature; an untouched pair keeps
    whatever the query had.
    """

    left: str
    right: str
    strict: bool = False


_RELATION = re.compile(r"^\s*(\S+)\s*(<=|>=|<|>)\s*(\S+)\s*$")


def parse_relation(text: str) -> Relation:
    """Parse `a <= b`, `a < b`, `a >= b` or `a > b` (feature names without spaces).

    Raises:
        ValueError: the text is not one of those forms.
    """
    match = _RELATION.match(text)
    if match is None:
        raise ValueError("expected `feature <= feature` (or <, >=, >)")
    left, op, right = match.groups()
    if op.startswith(">"):
        left, right = right, left
    return Relation(left, right, strict=op in ("<", ">"))


@dataclass(frozen=True, slots=True)
class Constraints:
    """What a counterfactual may change, and at what cost (features absent: no limit)."""

    immutable: frozenset[str] = frozenset()
    ranges: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)
    """Permitted [min, max] of numeric features (the training range, or the caller's)."""
    categories: Mapping[str, tuple[CategoryValue, ...]] = field(default_factory=dict,
                                                                repr=False)
    """Categories a categorical feature may take (default: every category of the schema)."""
    directions: Mapping[str, Direction] = field(default_factory=dict)
    """Numeric features move only this way; categorical ones follow the category order."""
    relations: tuple[Relation, ...] = ()
    costs: Mapping[str, float] = field(default_factory=dict)
    """Weight of a feature's change in the distance (default 1)."""


@dataclass(frozen=True, slots=True)
class CounterfactualRequest:
    """One search: the target, the constraints, how many answers, and the work allowed."""

    target: Target
    constraints: Constraints = field(default_factory=Constraints)
    count: int = 3
    budget: int = 1_000_000
    """Most candidate outputs evaluated (one candidate = one row scored by the search)."""
    max_changes: int = 4
    """Most features one counterfactual may change."""


class SearchStatus(StrEnum):
    """Whether the search returned at least one verified counterfactual."""

    FOUND = "found"
    NONE_FOUND = "none_found"


@dataclass(frozen=True, slots=True)
class Counterfactual:
    """A verified counterfactual: the model, re-scored on `row`, reaches the target."""

    row: FloatVector = field(repr=False)
    """The encoded counterfactual row (see `FeatureSpec` for the encoding)."""
    changes: Mapping[str, tuple[object, object]] = field(repr=False)
    """Changed features in schema order: (query value, counterfactual value), decoded."""
    score: float
    """Re-scored model score (P(positive), top-class probability, or predicted value)."""
    label: CategoryValue | None
    """Re-scored label (None for regression)."""
    n_changed: int
    distance: float
    """Cost-weighted L1 distance to the query, numeric changes in background MAD units."""
    plausibility: float | None
    """Unweighted distance to the nearest background row that reaches the target (lower
    is more plausible); None when no background row reaches it."""

    @property
    def changed_features(self) -> tuple[str, ...]:
        """Names of the changed features, in schema order."""
        return tuple(self.changes)


@dataclass(frozen=True, slots=True)
class CounterfactualResult:
    """The answer of one search, with the reason when nothing was found."""

    status: SearchStatus
    reason: str | None
    counterfactuals: tuple[Counterfactual, ...]
    requested: int
    method: str
    target: Mapping[str, object]
    """The resolved target: `label` and `threshold`, `not_label`, or `min`/`max`."""
    evaluations: int
    """Candidate outputs evaluated by the search (compare with the budget)."""
    budget: int
    rejected: int
    """Candidates dropped because the re-scored model or a constraint disagreed."""
    compute_ms: float

    @staticmethod
    def none_found(reason: str, *, requested: int, method: str, target: Mapping[str, object],
                   budget: int, evaluations: int = 0, rejected: int = 0,
                   compute_ms: float = 0.0) -> CounterfactualResult:
        """Build the explicit "nothing valid found" answer."""
        return CounterfactualResult(SearchStatus.NONE_FOUND, reason, (), requested, method,
                                    target, evaluations, budget, rejected, compute_ms)

