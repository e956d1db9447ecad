"""Predictions from a model's raw output, so one model call serves scoring and explaining.

An explainer must call the model anyway (its attributions are checked against the model's
own output), and the predictions are a fixed function of that output for the models we
explain: the logistic function of log-odds, softmax of multiclass logits, exp of a log
link. Each link is verified against the model's `predict` on probe rows when the
explainer is built; a model whose predictions do not follow (e.g. LightGBM's
`multiclassova`, or a `sigmoid` parameter other than 1) keeps calling `predict`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np
from scipy.special import expit, softmax

from explainers.errors import ExplainerError
from explainers.outputs import (
    binary_predictions,
    multiclass_predictions,
    regression_predictions,
)
from explainers.protocols import Explainer, ScoringModel
from explainers.types import Explanation, FloatMatrix, IntVector, OutputSpace, Predictions, Task

Link = Callable[[FloatMatrix], Predictions]

# Derived predictions must match `predict` this closely on every probe row (the links
# are the same float64 formulas the libraries use; they differ in the last bits only).
_LINK_RTOL = 1e-12
_LINK_ATOL = 1e-15


@runtime_checkable
class PredictingExplainer(Explainer, Protocol):
    """An explainer that also returns the model's predictions from its one model call."""

    def explain_predicting(self, X: FloatMatrix, *, class_indices: IntVector | None = None
                           ) -> tuple[Predictions, Explanation]:
        """Return the predictions and the explanation of the same rows."""
        ...


def predict_and_explain(model: ScoringModel, explainer: Explainer,
                        X: FloatMatrix) -> tuple[Predictions, Explanation]:
    """Score and explain rows, with one model call where the explainer can share it."""
    if isinstance(explainer, PredictingExplainer):
        return explainer.explain_predicting(X)
    return model.predict(X), explainer.explain(X)


def _binary(probability: FloatMatrix) -> Predictions:
    positive = np.ascontiguousarray(probability[:, 0])
    return binary_predictions(np.column_stack((1.0 - positive, positive)))


def _candidate(task: Task, space: OutputSpace) -> Link | None:
    links: dict[tuple[Task, OutputSpace], Link] = {
        (Task.REGRESSION, OutputSpace.VALUE): lambda out: regression_predictions(out[:, 0]),
        (Task.REGRESSION, OutputSpace.MARGIN):
            lambda out: regression_predictions(np.exp(out[:, 0])),
        (Task.BINARY, OutputSpace.LOG_ODDS): lambda out: _binary(expit(out)),
        (Task.BINARY, OutputSpace.PROBABILITY): _binary,
        (Task.MULTICLASS, OutputSpace.MARGIN):
            lambda out: multiclass_predictions(softmax(out, axis=1)),
        (Task.MULTICLASS, OutputSpace.PROBABILITY): multiclass_predictions,
    }
    return links.get((task, space))


def verified_link(model: ScoringModel, probe: FloatMatrix) -> Link | None:
    """Return the link from `model.output` to `model.predict`, if it holds on the probe.

    None when there is no probe row to check it on, the model cannot score the probe,
    or any probe row disagrees.
    """
    link = _candidate(model.schema.task, model.output_space)
    if link is None or len(probe) == 0:
        return None
    try:
        derived = link(model.output(probe))
        native = model.predict(probe)
    except ExplainerError:
        return None
    if not _same(derived, native):
        return None
    return link


def _same(derived: Predictions, native: Predictions) -> bool:
    def close(a: np.ndarray | None, b: np.ndarray | None) -> bool:
        if a is None or b is None:
            return a is None and b is None
        return a.shape == b.shape and bool(np.allclose(a, b, rtol=_LINK_RTOL, atol=_LINK_ATOL))

    same_classes = (derived.class_indices is None and native.class_indices is None) or (
        derived.class_indices is not None and native.class_indices is not None
        and np.array_equal(derived.class_indices, native.class_indices))
    return (same_classes and close(derived.scores, native.scores)
            and close(derived.probabilities, native.probabilities))
