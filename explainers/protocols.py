"""Seams between the service and the explainers."""

from __future__ import annotations

from typing import Protocol

from explainers.types import (
    Explanation,
    FloatMatrix,
    IntVector,
    ModelSchema,
    OutputSpace,
    Predictions,
)


class ScoringModel(Protocol):
    """A loaded model that scores encoded rows (see `FeatureSpec` for the encoding)."""

    schema: ModelSchema
    output_space: OutputSpace

    def output(self, X: FloatMatrix) -> FloatMatrix:
        """Return the model output in `output_space`, shape (n, schema.n_outputs)."""
        ...

    def predict(self, X: FloatMatrix) -> Predictions:
        """Return scores, class probabilities and top classes."""
        ...


class Explainer(Protocol):
    """Computes attributions that add up to `ScoringModel.output`."""

    method: str
    output_space: OutputSpace

    def explain(self, X: FloatMatrix, *, class_indices: IntVector | None = None) -> Explanation:
        """Explain each row; for multiclass, the given class per row (default: predicted)."""
        ...
