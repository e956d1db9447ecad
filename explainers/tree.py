"""Exact path-dependent TreeSHAP: LightGBM's native one, and the classic kernel (a fallback
and test oracle of `tree_linear.LinearTreeExplainer`) for flat ensembles."""

from __future__ import annotations

import time
from typing import Protocol

import numpy as np

from explainers.encoding import checked_matrix
from explainers.errors import SchemaMismatch, ScoringFailure, UnsupportedModel
from explainers.lightgbm_model import SCORING_ERRORS as LIGHTGBM_SCORING_ERRORS
from explainers.lightgbm_model import LightGBMModel
from explainers.outputs import (
    assemble_explanation,
    empty_explanation,
    resolve_classes,
    scoring_errors,
)
from explainers.protocols import ScoringModel
from explainers.tree_ensemble import TreeEnsemble
from explainers.treeshap_kernel import expected_value, predict_trees, tree_shap
from explainers.types import Explanation, FloatMatrix, IntVector, OutputSpace

TREE_SHAP = "tree_shap"

# Rows used to derive and verify the ensemble's constant offset against the model.
_PROBE_ROWS = 64
# The offset must agree across probe rows to this relative precision (float64 sums of
# a few hundred trees agree to ~1e-13; a flattening bug misses by far more).
_OFFSET_RTOL = 1e-9


class TreeInputModel(ScoringModel, Protocol):
    """A scoring model that also exposes the numeric matrix its trees compare."""

    def numeric_input(self, X: FloatMatrix) -> FloatMatrix:
        """Return the model's own numeric input for encoded rows."""
        ...


class LightGBMTreeExplainer:
    """LightGBM's built-in exact TreeSHAP (`pred_contrib`), categorical splits included."""

    method = TREE_SHAP

    def __init__(self, model: LightGBMModel) -> None:
        if model.header.linear_tree:
            raise UnsupportedModel("lightgbm.Booster", "pred_contrib does not cover linear trees")
        self._model = model
        self.output_space: OutputSpace = model.output_space

    def explain(self, X: FloatMatrix, *, class_indices: IntVector | None = None) -> Explanation:
        """Explain each row; for multiclass, the given class per row (default: predicted)."""
        started = time.perf_counter()
        schema = self._model.schema
        X = checked_matrix(X, schema)
        if len(X) == 0:
            return empty_explanation(schema, method=self.method, output_space=self.output_space)
        outputs = self._model.output(X)
        classes = resolve_classes(outputs, schema, class_indices=class_indices)
        n, n_features = X.shape
        inputs = self._model.numeric_input(X)
        with scoring_errors("lightgbm.Booster", LIGHTGBM_SCORING_ERRORS):
            contrib = self._model.booster.predict(inputs, pred_contrib=True)
        contrib = np.asarray(contrib, dtype=np.float64).reshape(n, schema.n_outputs,
                                                                 n_features + 1)
        picked = contrib[np.arange(n), np.zeros(n, dtype=np.int64) if classes is None
                         else classes]
        values = picked[:, :n_features]
        base = picked[:, n_features]
        return assemble_explanation(schema, outputs, classes, method=self.method,
                                    output_space=self.output_space, base_values=base,
                                    values=values, started=started)


class TreeEnsembleExplainer:
    """Our numba TreeSHAP kernel over a flattened ensemble (scikit-learn, or LightGBM)."""

    method = TREE_SHAP

    def __init__(self, ensemble: TreeEnsemble, model: TreeInputModel, *,
                 probe: FloatMatrix | None = None) -> None:
        check_ensemble(ensemble, model)
        self._model = model
        self.output_space: OutputSpace = ensemble.output_space
        self._ensemble = calibrate_offset(ensemble, model, probe=probe)
        self._outputs = [self._ensemble.output_trees(k) for k in range(ensemble.n_outputs)]
        self._expected = np.array([
            self._ensemble.base_offset[k]
            + expected_value(roots, trees=self._ensemble.trees, values=values)
            for k, (roots, values) in enumerate(self._outputs)
        ])

    @property
    def ensemble(self) -> TreeEnsemble:
        """The flattened trees, with the constant offset derived from the model."""
        return self._ensemble

    def explain(self, X: FloatMatrix, *, class_indices: IntVector | None = None) -> Explanation:
        """Explain each row; for multiclass, the given class per row (default: predicted)."""
        started = time.perf_counter()
        schema = self._model.schema
        X = checked_matrix(X, schema)
        if len(X) == 0:
            return empty_explanation(schema, method=self.method, output_space=self.output_space)
        outputs = self._model.output(X)
        classes = resolve_classes(outputs, schema, class_indices=class_indices)
        inputs = self._ensemble.model_precision(self._model.numeric_input(X))
        chosen = np.zeros(len(X), dtype=np.int64) if classes is None else classes
        values = np.empty(X.shape, dtype=np.float64)
        for k in np.unique(chosen):
            rows = np.flatnonzero(chosen == k)
            roots, node_values = self._outputs[k]
            values[rows] = tree_shap(inputs[rows], roots, trees=self._ensemble.trees,
                                     values=node_values, max_depth=self._ensemble.max_depth)
        base = self._expected[chosen]
        return assemble_explanation(schema, outputs, classes, method=self.method,
                                    output_space=self.output_space, base_values=base,
                                    values=values, started=started)


def check_ensemble(ensemble: TreeEnsemble, model: TreeInputModel) -> None:
    """Raise SchemaMismatch unless the trees take the schema's inputs and give its outputs."""
    schema = model.schema
    if ensemble.n_features != len(schema.features):
        raise SchemaMismatch(f"{ensemble.n_features} features in the trees, "
                             f"{len(schema.features)} in the schema")
    if ensemble.n_outputs != schema.n_outputs:
        raise SchemaMismatch(f"{ensemble.n_outputs} tree outputs, {schema.n_outputs} "
                             "model outputs")
    if ensemble.output_space is not model.output_space:
        raise SchemaMismatch(f"trees explain {ensemble.output_space}, the model scores "
                             f"{model.output_space}")


def calibrate_offset(ensemble: TreeEnsemble, model: TreeInputModel, *,
                     probe: FloatMatrix | None) -> TreeEnsemble:
    """Derive the constant offset (init score, baseline) from the model's own output.

    The offset must be the same on every probe row; otherwise the flat trees do not
    reproduce the model (an unknown init estimator, a flattening gap) and we refuse the
    model rather than explain something else.
    """
    rows = np.zeros((1, len(model.schema.features)))
    raw = model.output(rows)
    if probe is not None and len(probe):
        with_probe = np.vstack((rows, checked_matrix(probe, model.schema)[:_PROBE_ROWS]))
        try:
            raw = model.output(with_probe)
            rows = with_probe
        except ScoringFailure:
            # e.g. background NaNs for a model without missing-value support: the model
            # is still explainable for the rows it can score
            pass
    inputs = ensemble.model_precision(model.numeric_input(rows))
    per_output = (ensemble.output_trees(k) for k in range(ensemble.n_outputs))
    sums = np.column_stack([
        predict_trees(inputs, roots, trees=ensemble.trees, values=values)
        for roots, values in per_output
    ])
    offsets = raw - sums
    spread = offsets.max(axis=0) - offsets.min(axis=0)
    scale = max(1.0, float(np.abs(raw).max()))
    if not np.all(np.isfinite(offsets)) or np.any(spread > _OFFSET_RTOL * scale):
        raise UnsupportedModel(type(model).__name__,
                               "the flattened trees do not reproduce the model's output")
    return ensemble.with_base_offset(offsets.mean(axis=0))

