"""The constraints of one counterfactual query as arrays: admissible moves, checks, distances.

Everything works in the encoded space of `FeatureSpec` (category index for categorical
features). A move sets one feature to one value; a row is admissible when every changed
feature may change, stays in its range and direction, takes an allowed category, and the
relations over changed features hold.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from explainers.counterfactual_types import Constraints, Direction
from explainers.encoding import category_lookup
from explainers.errors import CounterfactualRequestInvalid
from explainers.types import FeatureKind, FloatMatrix, FloatVector, IntVector, ModelSchema

BoolMatrix = npt.NDArray[np.bool_]

_DIRECTION_SIGN = {Direction.ANY: 0, Direction.INCREASE: 1, Direction.DECREASE: -1}


def feature_scales(background: FloatMatrix, schema: ModelSchema) -> FloatVector:
    """Per-feature unit of change: the background's median absolute deviation.

    A feature with MAD 0 (mostly one value) falls back to its mean absolute deviation
    from the median, then to 1, so a change of it still costs something finite.
    """
    scales = np.ones(len(schema.features), dtype=np.float64)
    for j, spec in enumerate(schema.features):
        if spec.kind is FeatureKind.CATEGORICAL:
            continue
        column = background[:, j]
        column = column[np.isfinite(column)]
        if column.size == 0:
            continue
        deviation = np.abs(column - np.median(column))
        mad = float(np.median(deviation))
        if mad <= 0:
            mad = float(deviation.mean())
        scales[j] = mad if mad > 0 else 1.0
    return scales


def integer_features(background: FloatMatrix, schema: ModelSchema) -> np.ndarray:
    """Numeric features whose background values are all whole numbers (counts, ages)."""
    flags = np.zeros(len(schema.features), dtype=bool)
    for j, spec in enumerate(schema.features):
        if spec.kind is FeatureKind.NUMERIC:
            column = background[:, j]
            column = column[np.isfinite(column)]
            flags[j] = column.size > 0 and bool(np.all(column == np.round(column)))
    return flags


def changed_mask(rows: FloatMatrix, x: FloatVector) -> BoolMatrix:
    """Which entries of each row differ from the query (missing equals missing)."""
    same = (rows == x) | (np.isnan(rows) & np.isnan(x))
    changed: BoolMatrix = ~same
    return changed


class FeatureSpace:
    """The constraints of one query compiled against the schema."""

    def __init__(self, schema: ModelSchema, x: FloatVector, constraints: Constraints, *,
                 scales: FloatVector) -> None:
        self.schema = schema
        self.x = np.asarray(x, dtype=np.float64)
        self.scales = scales
        names = {name: j for j, name in enumerate(schema.feature_names)}
        m = len(schema.features)
        self.categorical = np.array([f.kind is FeatureKind.CATEGORICAL for f in schema.features])
        self.mutable = np.ones(m, dtype=bool)
        for name in constraints.immutable:
            self.mutable[_index(names, name, "immutable")] = False
        self.low = np.full(m, -np.inf)
        self.high = np.full(m, np.inf)
        for name, (low, high) in constraints.ranges.items():
            j = _index(names, name, f"ranges.{name}")
            if self.categorical[j]:
                raise CounterfactualRequestInvalid(f"ranges.{name}", "a categorical feature "
                                                   "has no range; list its categories instead")
            self.low[j] = -np.inf if low is None else float(low)
            self.high[j] = np.inf if high is None else float(high)
            if self.low[j] > self.high[j]:
                raise CounterfactualRequestInvalid(f"ranges.{name}", "min is above max")
        self.direction = np.zeros(m, dtype=np.int8)
        for name, direction in constraints.directions.items():
            self.direction[_index(names, name, f"directions.{name}")] = \
                _DIRECTION_SIGN[Direction(direction)]
        self.allowed = self._allowed_categories(constraints, names)
        self.costs = np.ones(m, dtype=np.float64)
        for name, cost in constraints.costs.items():
            j = _index(names, name, f"weights.{name}")
            if not np.isfinite(cost) or cost <= 0:
                raise CounterfactualRequestInvalid(f"weights.{name}", "must be a positive number")
            self.costs[j] = float(cost)
        self.relation_left, self.relation_right, self.relation_strict = \
            self._relations(constraints, names)

    def _allowed_categories(self, constraints: Constraints,
                            names: dict[str, int]) -> dict[int, np.ndarray]:
        allowed: dict[int, np.ndarray] = {}
        for j, spec in enumerate(self.schema.features):
            if spec.kind is FeatureKind.CATEGORICAL:
                allowed[j] = np.ones(len(spec.categories), dtype=bool)
        for name, values in constraints.categories.items():
            j = _index(names, name, f"categories.{name}")
            if j not in allowed:
                raise CounterfactualRequestInvalid(f"categories.{name}",
                                                   "not a categorical feature")
            lookup = category_lookup(self.schema.features[j].categories)
            mask = np.zeros(len(self.schema.features[j].categories), dtype=bool)
            for position, value in enumerate(values):
                index = lookup.get(value) if isinstance(value, str | int | float) else None
                if index is None:
                    raise CounterfactualRequestInvalid(f"categories.{name}[{position}]",
                                                       "not a category seen in training")
                mask[index] = True
            allowed[j] = mask
        return allowed

    def _relations(self, constraints: Constraints,
                   names: dict[str, int]) -> tuple[IntVector, IntVector, np.ndarray]:
        left, right, strict = [], [], []
        for k, relation in enumerate(constraints.relations):
            a = _index(names, relation.left, f"constraints[{k}]")
            b = _index(names, relation.right, f"constraints[{k}]")
            if self.categorical[a] or self.categorical[b] or a == b:
                raise CounterfactualRequestInvalid(f"constraints[{k}]",
                                                   "needs two different numeric features")
            left.append(a)
            right.append(b)
            strict.append(relation.strict)
        return (np.array(left, dtype=np.int64), np.array(right, dtype=np.int64),
                np.array(strict, dtype=bool))

    def admissible(self, features: IntVector, values: FloatVector) -> np.ndarray:
        """Tell, per move (feature, value) away from the query, whether it is allowed."""
        features = np.asarray(features, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        current = self.x[features]
        ok = self.mutable[features] & np.isfinite(values)
        ok &= ~((values == current) | (np.isnan(values) & np.isnan(current)))
        ok &= (values >= self.low[features]) & (values <= self.high[features])
        sign = self.direction[features]
        has_reference = np.isfinite(current)
        ok &= ~((sign > 0) & has_reference & ~(values > current))
        ok &= ~((sign < 0) & has_reference & ~(values < current))
        for j, mask in self.allowed.items():
            at = np.flatnonzero((features == j) & ok)
            if at.size:
                index = values[at].astype(np.int64)
                inside = (index >= 0) & (index < mask.size) & (values[at] == index)
                ok[at] = inside & mask[np.clip(index, 0, mask.size - 1)]
        return ok

    def satisfied(self, rows: FloatMatrix) -> np.ndarray:
        """Tell, per row, whether it respects every constraint of the query."""
        rows = np.atleast_2d(rows)
        changed = changed_mask(rows, self.x)
        which_row, which_feature = np.nonzero(changed)
        ok = np.ones(len(rows), dtype=bool)
        good = self.admissible(which_feature, rows[which_row, which_feature])
        np.logical_and.at(ok, which_row, good)
        for a, b, strict in zip(self.relation_left, self.relation_right, self.relation_strict,
                                strict=True):
            binds = changed[:, a] | changed[:, b]
            holds = rows[:, a] < rows[:, b] if strict else rows[:, a] <= rows[:, b]
            ok &= ~binds | holds
        return ok

    def relations_hold(self, states: FloatMatrix, features: IntVector,
                       values: FloatVector) -> BoolMatrix:
        """Per (state, move): whether the state with the move applied keeps the relations."""
        ok = np.ones((len(states), features.shape[0]), dtype=bool)
        if self.relation_left.size == 0:
            return ok
        changed = changed_mask(states, self.x)
        for a, b, strict in zip(self.relation_left, self.relation_right, self.relation_strict,
                                strict=True):
            on_a, on_b = features == a, features == b
            va = np.where(on_a[None, :], values[None, :], states[:, a][:, None])
            vb = np.where(on_b[None, :], values[None, :], states[:, b][:, None])
            binds = (on_a | on_b)[None, :] | (changed[:, a] | changed[:, b])[:, None]
            holds = va < vb if strict else va <= vb
            ok &= ~binds | holds
        return ok

    def move_distance(self, features: IntVector, values: FloatVector) -> FloatVector:
        """Cost-weighted distance of single moves from the query."""
        units = _unit_change(self.x[features], values, self.scales[features],
                             self.categorical[features])
        return np.asarray(self.costs[features] * units, dtype=np.float64)

    def distance(self, rows: FloatMatrix) -> FloatVector:
        """Cost-weighted L1 distance of rows to the query (numeric changes in MAD units)."""
        units = _unit_change(self.x[None, :], rows, self.scales[None, :],
                             self.categorical[None, :])
        return np.asarray(units @ self.costs, dtype=np.float64)


def unweighted_distance(a: FloatMatrix, b: FloatMatrix, *, scales: FloatVector,
                        categorical: np.ndarray) -> FloatMatrix:
    """Pairwise MAD-normalised L1 distances between the rows of a and b, shape (len a, len b)."""
    units = _unit_change(a[:, None, :], b[None, :, :], scales[None, None, :],
                         categorical[None, None, :])
    return np.asarray(units.sum(axis=2), dtype=np.float64)


def _unit_change(x: np.ndarray, values: np.ndarray, scales: np.ndarray,
                 categorical: np.ndarray) -> np.ndarray:
    """Per-entry change: |Δ|/scale for numeric, 1 for a category or a missing switch."""
    both_missing = np.isnan(x) & np.isnan(values)
    one_missing = np.isnan(x) ^ np.isnan(values)
    with np.errstate(invalid="ignore"):
        numeric = np.abs(values - x) / scales
        category = (values != x).astype(np.float64)
    units = np.where(categorical, category, numeric)
    units = np.where(one_missing, 1.0, units)
    return np.where(both_missing, 0.0, units)


def _index(names: dict[str, int], name: str, field: str) -> int:
    j = names.get(name)
    if j is None:
        raise CounterfactualRequestInvalid(field, "not a feature of the model")
    return j
