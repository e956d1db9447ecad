"""Candidate single-feature moves and how a search evaluates them, per model kind.

`TreeMoves` proposes one value per threshold interval of each numeric feature (the only
places where a tree ensemble's output can change) and every category of categorical
features, and evaluates all of them exactly through the flattened trees. `SampleMoves`
serves any other model: candidate values come from the background sample's quantiles
and the permitted range, and rows are scored through the model in one batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from explainers.counterfactual_goal import prediction_space, prediction_values
from explainers.counterfactual_kernel import CANDIDATES, FIXED, GRID, single_move_outputs
from explainers.counterfactual_space import FeatureSpace
from explainers.counterfactual_values import model_value, values_above, values_at_most
from explainers.errors import UnsupportedModel
from explainers.outputs import classification_predictions, regression_predictions
from explainers.protocols import ScoringModel
from explainers.tree import TreeInputModel
from explainers.tree_ensemble import TreeEnsemble
from explainers.types import (
    FeatureKind,
    FloatMatrix,
    FloatVector,
    IntVector,
    OutputSpace,
    Predictions,
    Task,
)

# Background quantiles offered as candidate values to models without thresholds.
SAMPLE_QUANTILES = np.linspace(0.0, 1.0, 21)
# A round value may sit this share of the feature's scale (MAD) past a threshold.
ROUNDING_SHARE = 0.01


@dataclass(frozen=True, slots=True)
class MoveSet:
    """Single-feature moves away from the query: set `features[i]` to `values[i]`."""

    features: IntVector
    values: FloatVector
    slots: IntVector  # kernel slot of the move (tree models), else -1
    costs: FloatVector  # cost-weighted distance of the move from the query

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def subset(self, keep: np.ndarray) -> MoveSet:
        """The moves where `keep` is true."""
        return MoveSet(self.features[keep], self.values[keep], self.slots[keep],
                       self.costs[keep])


def move_set(space: FeatureSpace, features: IntVector, values: FloatVector,
             slots: IntVector) -> MoveSet:
    """Keep the admissible moves and price them."""
    keep = space.admissible(features, values)
    features, values, slots = features[keep], values[keep], slots[keep]
    return MoveSet(features, values, slots, space.move_distance(features, values))


class MoveEvaluator(Protocol):
    """Proposes moves for a query and evaluates them from any state row."""

    method: str
    stepwise: bool
    """The output is piecewise constant between the proposed values (trees): refining a
    change needs no values beyond them."""

    def moves(self, space: FeatureSpace) -> MoveSet:
        """The admissible single-feature moves away from the query."""
        ...

    def evaluate(self, states: FloatMatrix, moves: MoveSet
                 ) -> tuple[np.ndarray, np.ndarray, OutputSpace]:
        """Outputs of the states (S, K) and of each state with each move (S, n_moves, K)."""
        ...

    def score(self, rows: FloatMatrix) -> tuple[np.ndarray, OutputSpace]:
        """Outputs of whole rows (n, K), for ranking; the model has the final word."""
        ...

    def predictions(self, rows: FloatMatrix) -> Predictions:
        """Predictions of whole rows as the evaluator sees them (the model re-checks)."""
        ...


class TreeMoves:
    """Threshold-crossing moves evaluated exactly through a flattened ensemble."""

    method = "tree_thresholds"
    stepwise = True

    def __init__(self, ensemble: TreeEnsemble, model: TreeInputModel, *,
                 scales: FloatVector, integer: np.ndarray) -> None:
        schema = model.schema
        self._ensemble = ensemble
        self._model = model
        trees = ensemble.trees
        m = len(schema.features)
        inner = trees.left >= 0
        numeric_split = inner & (trees.category_starts < 0)
        self.node_slot = np.full(trees.left.shape[0], -1, dtype=np.int64)
        self.kinds = np.full(m, FIXED, dtype=np.int64)
        sizes = np.zeros(m, dtype=np.int64)
        self.grids: dict[int, FloatVector] = {}
        self.above: dict[int, FloatVector] = {}
        self.at_most: dict[int, FloatVector] = {}
        categorical_codes: dict[int, FloatVector] = {}
        for j, spec in enumerate(schema.features):
            used = inner & (trees.features == j)
            if not used.any():
                continue
            if spec.kind is FeatureKind.CATEGORICAL:
                categorical_codes[j] = self._category_codes(j, len(spec.categories))
                self.kinds[j], sizes[j] = CANDIDATES, len(spec.categories)
                continue
            if (used & ~numeric_split).any():
                raise UnsupportedModel("tree ensemble",
                                       f"categorical splits on numeric feature {spec.name}")
            nodes = np.flatnonzero(used)
            grid = np.unique(trees.thresholds[nodes])
            self.node_slot[nodes] = np.searchsorted(grid, trees.thresholds[nodes])
            self.kinds[j], sizes[j] = GRID, grid.size + 1
            self.grids[j] = grid
            low = np.concatenate(([-np.inf], grid))
            high = np.concatenate((grid, [np.inf]))
            tolerance = ROUNDING_SHARE * float(scales[j])
            whole, float32 = bool(integer[j]), ensemble.float32_inputs
            self.above[j] = values_above(low, high, tolerance=tolerance, integer=whole,
                                         float32=float32)
            self.at_most[j] = values_at_most(low, high, tolerance=tolerance, integer=whole,
                                             float32=float32)
        self.seg_start = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
        self.codes = np.full(int(self.seg_start[-1]), np.nan)
        for j, codes in categorical_codes.items():
            self.codes[self.seg_start[j]:self.seg_start[j + 1]] = codes
        self._fixed = np.full(m, FIXED, dtype=np.int64)
        self._no_slots = np.zeros(m + 1, dtype=np.int64)

    def _category_codes(self, j: int, n_categories: int) -> FloatVector:
        rows = np.zeros((n_categories, len(self._model.schema.features)))
        rows[:, j] = np.arange(n_categories)
        inputs = self._ensemble.model_precision(self._model.numeric_input(rows))
        return np.ascontiguousarray(inputs[:, j])

    def moves(self, space: FeatureSpace) -> MoveSet:
        """One value per reachable threshold interval, and every other category."""
        features, values, slots = [], [], []
        float32 = self._ensemble.float32_inputs
        for j in np.flatnonzero((self.kinds != FIXED) & space.mutable):
            first = int(self.seg_start[j])
            if self.kinds[j] == CANDIDATES:
                index = np.arange(int(self.seg_start[j + 1]) - first)
                index = index[np.isfinite(self.codes[first + index])]
                candidate = index.astype(np.float64)
                slot = first + index
            else:
                candidate, slot = self._interval_values(int(j), space, float32)
            features.append(np.full(candidate.shape, j, dtype=np.int64))
            values.append(candidate)
            slots.append(slot)
        if not features:
            empty = np.zeros(0, dtype=np.int64)
            return MoveSet(empty, np.zeros(0), empty, np.zeros(0))
        return move_set(space, np.concatenate(features), np.concatenate(values),
                        np.concatenate(slots))

    def _interval_values(self, j: int, space: FeatureSpace,
                         float32: bool) -> tuple[FloatVector, IntVector]:
        grid = self.grids[j]
        low = np.concatenate(([-np.inf], grid))
        high = np.concatenate((grid, [np.inf]))
        current = space.x[j]
        intervals = np.arange(grid.size + 1)
        if np.isnan(current):
            here = -1
            candidate = np.where(intervals == 0, self.at_most[j], self.above[j])
        else:
            seen = model_value(np.array([current]), float32=float32)[0]
            here = int(np.searchsorted(grid, seen))
            candidate = np.where(intervals > here, self.above[j], self.at_most[j])
        lo, hi = space.low[j], space.high[j]
        candidate = np.where(candidate < lo, lo, candidate)
        candidate = np.where(candidate > hi, hi, candidate)
        seen = model_value(candidate, float32=float32)
        with np.errstate(invalid="ignore"):
            inside = (seen > low) & (seen <= high) & (intervals != here)
        keep = np.flatnonzero(inside)
        return candidate[keep], int(self.seg_start[j]) + keep

    def evaluate(self, states: FloatMatrix, moves: MoveSet
                 ) -> tuple[np.ndarray, np.ndarray, OutputSpace]:
        """Exact raw outputs of the states and of every move from each state."""
        ensemble = self._ensemble
        inputs = ensemble.model_precision(self._model.numeric_input(states))
        base, delta = single_move_outputs(
            inputs, roots=ensemble.roots, tree_outputs=ensemble.tree_outputs,
            trees=ensemble.trees, values=ensemble.values, base_offset=ensemble.base_offset,
            node_slot=self.node_slot, kinds=self.kinds, seg_start=self.seg_start,
            codes=self.codes, max_depth=ensemble.max_depth)
        return base, base[:, None, :] + delta[:, moves.slots, :], ensemble.output_space

    def score(self, rows: FloatMatrix) -> tuple[np.ndarray, OutputSpace]:
        """Raw outputs of rows through the flattened trees (no model call)."""
        ensemble = self._ensemble
        inputs = ensemble.model_precision(self._model.numeric_input(rows))
        outputs, _ = single_move_outputs(
            inputs, roots=ensemble.roots, tree_outputs=ensemble.tree_outputs,
            trees=ensemble.trees, values=ensemble.values, base_offset=ensemble.base_offset,
            node_slot=self.node_slot, kinds=self._fixed, seg_start=self._no_slots,
            codes=self.codes[:0], max_depth=ensemble.max_depth)
        return outputs, ensemble.output_space

    def predictions(self, rows: FloatMatrix) -> Predictions:
        """Predictions through the flattened trees and the output space's link."""
        outputs, space = self.score(rows)
        task = self._model.schema.task
        if task is Task.REGRESSION:
            return regression_predictions(np.exp(outputs[:, 0]) if space is OutputSpace.MARGIN
                                          else outputs[:, 0])
        if space is OutputSpace.PROBABILITY:
            probabilities = outputs
        elif task is Task.BINARY:
            probabilities = 1.0 / (1.0 + np.exp(-outputs))
        else:
            shifted = np.exp(outputs - outputs.max(axis=1, keepdims=True))
            probabilities = shifted / shifted.sum(axis=1, keepdims=True)
        if task is Task.BINARY:
            probabilities = np.column_stack((1.0 - probabilities[:, 0], probabilities[:, 0]))
        return classification_predictions(probabilities, task)


class SampleMoves:
    """Background-quantile moves scored through the model (linear models, pipelines)."""

    method = "sample_search"
    stepwise = False

    def __init__(self, model: ScoringModel, background: FloatMatrix) -> None:
        self._model = model
        self._candidates: dict[int, FloatVector] = {}
        for j, spec in enumerate(model.schema.features):
            if spec.kind is FeatureKind.CATEGORICAL:
                self._candidates[j] = np.arange(len(spec.categories), dtype=np.float64)
                continue
            column = background[:, j]
            column = column[np.isfinite(column)]
            if column.size:
                self._candidates[j] = np.unique(np.quantile(column, SAMPLE_QUANTILES,
                                                            method="nearest"))

    def moves(self, space: FeatureSpace) -> MoveSet:
        """Background quantiles and the range ends of numeric features; every category."""
        features, values = [], []
        for j in np.flatnonzero(space.mutable):
            candidate = self._candidates.get(int(j))
            if candidate is None:
                continue
            ends = [v for v in (space.low[j], space.high[j]) if np.isfinite(v)]
            if not space.categorical[j] and ends:
                candidate = np.unique(np.concatenate((candidate, ends)))
            features.append(np.full(candidate.shape, j, dtype=np.int64))
            values.append(candidate)
        if not features:
            empty = np.zeros(0, dtype=np.int64)
            return MoveSet(empty, np.zeros(0), empty, np.zeros(0))
        feature_array = np.concatenate(features)
        return move_set(space, feature_array, np.concatenate(values),
                        np.full(feature_array.shape, -1, dtype=np.int64))

    def evaluate(self, states: FloatMatrix, moves: MoveSet
                 ) -> tuple[np.ndarray, np.ndarray, OutputSpace]:
        """Score every state and every state-with-move row in one model call."""
        n_states, n_moves = len(states), len(moves)
        rows = np.repeat(states, n_moves + 1, axis=0)
        grid = rows.reshape(n_states, n_moves + 1, -1)
        grid[:, 1:, :][:, np.arange(n_moves), moves.features] = moves.values
        task = self._model.schema.task
        values = prediction_values(self._model.predict(rows), task)
        values = values.reshape(n_states, n_moves + 1, -1)
        return values[:, 0, :], values[:, 1:, :], prediction_space(task)

    def score(self, rows: FloatMatrix) -> tuple[np.ndarray, OutputSpace]:
        """Prediction values of rows through the model."""
        task = self._model.schema.task
        return prediction_values(self._model.predict(rows), task), prediction_space(task)

    def predictions(self, rows: FloatMatrix) -> Predictions:
        """The model's own predictions."""
        return self._model.predict(rows)
