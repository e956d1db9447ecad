"""A counterfactual target resolved for one query: progress toward it and reaching it.

The search ranks candidates by `progress` (>= 0, or > 0 when the target is strict, means
reached) on raw model outputs or on prediction values; the final verdict is always
`reached` on the model's own `Predictions`.
"""

from __future__ import annotations

import numpy as np

from explainers.counterfactual_types import ClassTarget, IntervalTarget, LabelTarget, Target
from explainers.errors import CounterfactualRequestInvalid
from explainers.types import CategoryValue, FloatMatrix, ModelSchema, OutputSpace, Predictions, Task

# Output spaces whose link to the decision is known, per task.
SEARCHABLE_SPACES = {
    Task.BINARY: frozenset({OutputSpace.LOG_ODDS, OutputSpace.PROBABILITY}),
    Task.MULTICLASS: frozenset({OutputSpace.MARGIN, OutputSpace.PROBABILITY}),
    Task.REGRESSION: frozenset({OutputSpace.VALUE, OutputSpace.MARGIN}),
}


def prediction_values(predictions: Predictions, task: Task) -> FloatMatrix:
    """Predictions as a matrix `progress` reads in PROBABILITY (or VALUE) space."""
    if task is Task.MULTICLASS:
        assert predictions.probabilities is not None
        return predictions.probabilities
    return predictions.scores[:, None]


def prediction_space(task: Task) -> OutputSpace:
    """The space of `prediction_values` for a task."""
    return OutputSpace.VALUE if task is Task.REGRESSION else OutputSpace.PROBABILITY


class Goal:
    """The target of one query, checked against the query's own prediction."""

    def __init__(self, target: Target, schema: ModelSchema, query: Predictions) -> None:
        self.schema = schema
        self.task = schema.task
        self.threshold = 0.5
        self.positive = True
        self.class_index: int | None = None
        self.current_class = -1
        self.low, self.high = -np.inf, np.inf
        if self.task is Task.BINARY:
            if not isinstance(target, LabelTarget):
                raise CounterfactualRequestInvalid("target", "a binary model takes a label")
            self.threshold = float(target.threshold)
            current = bool(query.scores[0] >= self.threshold)
            self.positive = (not current) if target.positive is None else target.positive
        elif self.task is Task.MULTICLASS:
            if not isinstance(target, ClassTarget):
                raise CounterfactualRequestInvalid("target", "a multiclass model takes a class")
            assert query.class_indices is not None
            self.current_class = int(query.class_indices[0])
            if target.class_index is not None and not (
                    0 <= target.class_index < len(schema.classes)):
                raise CounterfactualRequestInvalid("target.class", "not a class of the model")
            self.class_index = target.class_index
        else:
            if not isinstance(target, IntervalTarget) or (target.low is None
                                                          and target.high is None):
                raise CounterfactualRequestInvalid("target", "a regression model takes an "
                                                   "interval with min and/or max")
            self.low = -np.inf if target.low is None else float(target.low)
            self.high = np.inf if target.high is None else float(target.high)
            if self.low > self.high:
                raise CounterfactualRequestInvalid("target", "min is above max")
        self.strict = self.task is Task.MULTICLASS or (self.task is Task.BINARY
                                                        and not self.positive)

    def describe(self) -> dict[str, object]:
        """The resolved target, for traces (class labels or the interval; no features)."""
        if self.task is Task.BINARY:
            classes = self.schema.classes or (0, 1)
            return {"label": classes[1] if self.positive else classes[0],
                    "threshold": self.threshold}
        if self.task is Task.MULTICLASS:
            if self.class_index is None:
                return {"not_label": self.schema.classes[self.current_class]}
            return {"label": self.schema.classes[self.class_index]}
        return {"min": None if np.isinf(self.low) else self.low,
                "max": None if np.isinf(self.high) else self.high}

    def progress(self, values: np.ndarray, space: OutputSpace) -> np.ndarray:
        """Progress toward the target of outputs shaped (..., n_outputs) in `space`."""
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            if self.task is Task.BINARY:
                out = values[..., 0]
                cut = self.threshold
                if space is OutputSpace.LOG_ODDS:
                    cut = float(np.log(cut) - np.log1p(-cut))
                result = out - cut if self.positive else cut - out
            elif self.task is Task.MULTICLASS:
                result = self._class_progress(values)
            else:
                out = values[..., 0]
                y = np.exp(out) if space is OutputSpace.MARGIN else out
                result = np.minimum(y - self.low, self.high - y)
        return np.nan_to_num(np.asarray(result, dtype=np.float64), nan=-np.inf)

    def _class_progress(self, values: np.ndarray) -> np.ndarray:
        wanted = self.class_index if self.class_index is not None else self.current_class
        others = np.delete(values, wanted, axis=-1)
        gap = values[..., wanted] - others.max(axis=-1)
        return np.asarray(gap if self.class_index is not None else -gap)

    def hit(self, progress: np.ndarray) -> np.ndarray:
        """Tell where a progress value means the target is reached."""
        return progress > 0 if self.strict else progress >= 0

    def reached(self, predictions: Predictions) -> np.ndarray:
        """The authoritative check on the model's own predictions."""
        if self.task is Task.BINARY:
            return np.asarray((predictions.scores >= self.threshold) == self.positive)
        if self.task is Task.MULTICLASS:
            assert predictions.class_indices is not None
            if self.class_index is None:
                return np.asarray(predictions.class_indices != self.current_class)
            return np.asarray(predictions.class_indices == self.class_index)
        scores = predictions.scores
        return np.asarray((scores >= self.low) & (scores <= self.high))

    def label(self, predictions: Predictions, i: int) -> CategoryValue | None:
        """The label of row i of the predictions (None for regression)."""
        classes = self.schema.classes
        if self.task is Task.BINARY:
            positive = bool(predictions.scores[i] >= self.threshold)
            return (classes or (0, 1))[1 if positive else 0]
        if self.task is Task.MULTICLASS:
            assert predictions.class_indices is not None
            return classes[int(predictions.class_indices[i])]
        return None
