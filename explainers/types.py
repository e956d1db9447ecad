"""Value types shared by every explainer: schemas in, predictions and explanations out."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

FloatMatrix = npt.NDArray[np.float64]
FloatVector = npt.NDArray[np.float64]
IntVector = npt.NDArray[np.int64]
CategoryValue = str | int | float


class Task(StrEnum):
    """What the model predicts."""

    BINARY = "binary"
    REGRESSION = "regression"
    MULTICLASS = "multiclass"


class FeatureKind(StrEnum):
    """How a feature's values are interpreted."""

    NUMERIC = "numeric"
    CATEGORICAL = "categorical"


class OutputSpace(StrEnum):
    """The scale on which attributions add up to the model output."""

    LOG_ODDS = "log_odds"  # binary margin: logit of P(positive class)
    MARGIN = "margin"  # multiclass softmax logits, or a regression link (log for poisson)
    PROBABILITY = "probability"  # averaged class probabilities (random forests, pipelines)
    VALUE = "value"  # regression output on the target's own scale


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """One model input as the explainers see it.

    Categorical values are encoded as the index into `categories` (a float, NaN for
    missing or unseen); each model adapter maps that index to its own input encoding.
    """

    name: str
    kind: FeatureKind
    categories: tuple[CategoryValue, ...] = ()


@dataclass(frozen=True, slots=True)
class ModelSchema:
    """The inputs and task of one model version."""

    features: tuple[FeatureSpec, ...]
    task: Task
    classes: tuple[CategoryValue, ...] = ()

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def n_outputs(self) -> int:
        """Columns of `ScoringModel.output`: one per class for multiclass, else one."""
        return len(self.classes) if self.task is Task.MULTICLASS else 1


@dataclass(frozen=True, slots=True)
class Predictions:
    """Model predictions for a batch of encoded rows.

    `scores` is P(positive class) for binary, the predicted value for regression and the
    probability of the top class for multiclass. `probabilities` is (n, C) for
    classification. `class_indices` is the argmax class for multiclass, else None (the
    binary label depends on the caller's threshold).
    """

    scores: FloatVector
    probabilities: FloatMatrix | None
    class_indices: IntVector | None


@dataclass(frozen=True, slots=True)
class Explanation:
    """Attributions for a batch of rows, one explained output per row.

    Invariant: `base_values[i] + values[i].sum() == outputs[i]` in `output_space`.
    """

    method: str
    output_space: OutputSpace
    feature_names: tuple[str, ...]
    base_values: FloatVector  # (n,)
    values: FloatMatrix  # (n, M)
    outputs: FloatVector  # (n,) model output of the explained class, in output_space
    class_indices: IntVector | None  # (n,) explained class for multiclass, else None
    compute_ms: float

    def attributions(self, row: int) -> dict[str, float]:
        """Return one row's attributions keyed by feature name, in schema order."""
        return dict(zip(self.feature_names, (float(v) for v in self.values[row]), strict=True))

    def top(self, row: int, k: int) -> list[tuple[str, float]]:
        """Return the k features with the largest |attribution| for one row."""
        order = np.argsort(-np.abs(self.values[row]), kind="stable")[:k]
        return [(self.feature_names[j], float(self.values[row, j])) for j in order]
