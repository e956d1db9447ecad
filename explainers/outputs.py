"""Model outputs shared by adapters and explainers: predictions, explained class, additivity."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from explainers.errors import AdditivityViolation, InvalidClassIndex, ScoringFailure
from explainers.types import (
    Explanation,
    FloatMatrix,
    FloatVector,
    IntVector,
    ModelSchema,
    OutputSpace,
    Predictions,
    Task,
)

# The contract's tolerance: base + sum(attributions) == output to 1e-6 relative. Outputs
# near zero get the same bound in absolute terms, since a relative bound there is noise.
ADDITIVITY_RTOL = 1e-6


def binary_predictions(probabilities: FloatMatrix) -> Predictions:
    """Build predictions from (n, 2) class probabilities; the score is P(positive)."""
    probabilities = np.ascontiguousarray(probabilities, dtype=np.float64)
    return Predictions(probabilities[:, 1].copy(), probabilities, None)


def multiclass_predictions(probabilities: FloatMatrix) -> Predictions:
    """Build predictions from (n, C) class probabilities; the score is the top probability."""
    probabilities = np.ascontiguousarray(probabilities, dtype=np.float64)
    top = np.argmax(probabilities, axis=1).astype(np.int64)
    scores = probabilities[np.arange(len(top)), top]
    return Predictions(scores, probabilities, top)


def regression_predictions(values: FloatVector) -> Predictions:
    """Build predictions from predicted values."""
    return Predictions(np.asarray(values, dtype=np.float64).reshape(-1), None, None)


def classification_predictions(probabilities: FloatMatrix, task: Task) -> Predictions:
    """Build binary or multiclass predictions from (n, C) probabilities."""
    if task is Task.BINARY:
        return binary_predictions(probabilities)
    return multiclass_predictions(probabilities)


def resolve_classes(outputs: FloatMatrix, schema: ModelSchema, *,
                    class_indices: IntVector | None) -> IntVector | None:
    """Return the class to explain per row: the given ones, else the top output.

    Only multiclass models have a class choice; binary models always explain the
    positive class. The argmax of the output equals the predicted class in every output
    space we use (probabilities, softmax logits and one-vs-rest logits are monotone).
    """
    if schema.task is not Task.MULTICLASS:
        return None
    n, n_classes = outputs.shape
    if class_indices is None:
        top: IntVector = np.argmax(outputs, axis=1).astype(np.int64)
        return top
    chosen = np.asarray(class_indices)
    if chosen.shape != (n,):
        raise InvalidClassIndex(n_classes, f"expected shape ({n},), got {chosen.shape}")
    if not np.issubdtype(chosen.dtype, np.integer):
        raise InvalidClassIndex(n_classes, f"expected integers, got {chosen.dtype}")
    if n and (chosen.min() < 0 or chosen.max() >= n_classes):
        raise InvalidClassIndex(n_classes, "index out of range")
    checked: IntVector = chosen.astype(np.int64)
    return checked


def explained_outputs(outputs: FloatMatrix, classes: IntVector | None) -> FloatVector:
    """Pick the explained output per row: column 0, or the row's class."""
    if classes is None:
        return np.ascontiguousarray(outputs[:, 0])
    return outputs[np.arange(len(classes)), classes]


def check_additivity(explanation: Explanation) -> None:
    """Raise AdditivityViolation when base + sum(values) misses the output.

    A miss means a flattening or encoding bug (e.g. a float32 cast missed), and a wrong
    explanation must never reach a trace.
    """
    outputs = explanation.outputs
    if outputs.size == 0:
        return
    total = explanation.base_values + explanation.values.sum(axis=1)
    error = np.abs(total - outputs)
    bound = ADDITIVITY_RTOL * np.maximum(np.abs(outputs), 1.0)
    if not np.all(error <= bound):
        worst = float(np.max(np.where(np.isnan(error), np.inf, error)))
        raise AdditivityViolation(explanation.method, worst)


def assemble_explanation(schema: ModelSchema, outputs: FloatMatrix, classes: IntVector | None,
                         *, method: str, output_space: OutputSpace, base_values: FloatVector,
                         values: FloatMatrix, started: float) -> Explanation:
    """Build a batch explanation of the chosen outputs and check that it adds up.

    `started` is the `time.perf_counter()` reading taken when the explanation began.
    """
    explanation = Explanation(
        method, output_space, schema.feature_names,
        np.ascontiguousarray(base_values, dtype=np.float64),
        np.ascontiguousarray(values, dtype=np.float64),
        explained_outputs(outputs, classes), classes,
        (time.perf_counter() - started) * 1000,
    )
    check_additivity(explanation)
    return explanation


def empty_explanation(schema: ModelSchema, *, method: str,
                      output_space: OutputSpace) -> Explanation:
    """Return the explanation of zero rows (explainers need no model call for it)."""
    classes = np.zeros(0, dtype=np.int64) if schema.task is Task.MULTICLASS else None
    return Explanation(method, output_space, schema.feature_names, np.zeros(0),
                       np.zeros((0, len(schema.features))), np.zeros(0), classes, 0.0)


@contextmanager
def scoring_errors(model_type: str,
                   errors: tuple[type[BaseException], ...]) -> Iterator[None]:
    """Turn a model library's scoring errors into ScoringFailure, without their message."""
    try:
        yield
    except errors as exc:
        # `from None`: the chained message could carry raw (masked) feature values
        raise ScoringFailure(model_type, type(exc).__name__) from None
