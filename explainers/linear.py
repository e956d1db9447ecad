"""Exact interventional SHAP for linear models: phi_j = coef_j * (x_j - mean_j)."""

from __future__ import annotations

import time

import numpy as np
from sklearn.linear_model import (
    ElasticNet,
    ElasticNetCV,
    Lasso,
    LassoCV,
    LinearRegression,
    LogisticRegression,
    LogisticRegressionCV,
    Ridge,
    RidgeCV,
    SGDClassifier,
    SGDRegressor,
)

from explainers.encoding import checked_matrix
from explainers.errors import (
    EmptyBackground,
    MissingValueUnsupported,
    SchemaMismatch,
    UnsupportedModel,
)
from explainers.outputs import (
    assemble_explanation,
    empty_explanation,
    resolve_classes,
)
from explainers.sklearn_model import SklearnModel, is_log_odds_classifier
from explainers.types import Explanation, FloatMatrix, IntVector, OutputSpace, Task

LINEAR_SHAP = "linear_shap"

LINEAR_MODELS = (LinearRegression, Ridge, RidgeCV, Lasso, LassoCV, ElasticNet, ElasticNetCV,
                 LogisticRegression, LogisticRegressionCV, SGDClassifier, SGDRegressor)


def is_linear_model(estimator: object) -> bool:
    """Tell whether the estimator is one of the linear models this explainer reads."""
    return isinstance(estimator, LINEAR_MODELS)


def linear_output_space(estimator: object, task: Task) -> OutputSpace:
    """The space the linear part lives in: value, log-odds, or decision-function margin."""
    if task is Task.REGRESSION:
        return OutputSpace.VALUE
    if task is Task.BINARY and is_log_odds_classifier(estimator):
        return OutputSpace.LOG_ODDS
    return OutputSpace.MARGIN


class LinearExplainer:
    """Interventional linear SHAP with the background mean as the reference point."""

    method = LINEAR_SHAP

    def __init__(self, model: SklearnModel, background: FloatMatrix) -> None:
        estimator = model.estimator
        name = type(estimator).__name__
        if not is_linear_model(estimator):
            raise UnsupportedModel(name, "not a supported linear model")
        schema = model.schema
        coef = np.atleast_2d(np.asarray(estimator.coef_, dtype=np.float64))  # type: ignore[attr-defined]
        intercept = np.broadcast_to(
            np.atleast_1d(np.asarray(estimator.intercept_, dtype=np.float64)),  # type: ignore[attr-defined]
            (coef.shape[0],),
        )
        if coef.shape != (schema.n_outputs, len(schema.features)):
            raise UnsupportedModel(name, f"coefficients of shape {coef.shape}")
        if model.schema_positions is not None:
            # coef_ follows the estimator's column order; our rows follow the schema's
            reordered = np.empty_like(coef)
            reordered[:, model.schema_positions] = coef
            coef = reordered
        expected_space = linear_output_space(estimator, schema.task)
        if model.output_space is not expected_space:
            raise SchemaMismatch(f"linear SHAP explains {expected_space}, the model scores "
                                 f"{model.output_space}")
        rows = model.numeric_input(background)
        # Rows with missing values cannot be scored by a linear model, so they are not
        # part of the reference distribution either.
        rows = rows[~np.isnan(rows).any(axis=1)]
        if len(rows) == 0:
            raise EmptyBackground()
        self._model = model
        self.output_space: OutputSpace = expected_space
        self._coef = coef
        self._mean = rows.mean(axis=0)
        self._base = coef @ self._mean + intercept

    def explain(self, X: FloatMatrix, *, class_indices: IntVector | None = None) -> Explanation:
        """Explain each row; for multiclass, the given class per row (default: predicted)."""
        started = time.perf_counter()
        schema = self._model.schema
        X = checked_matrix(X, schema)
        if len(X) == 0:
            return empty_explanation(schema, method=self.method, output_space=self.output_space)
        inputs = self._model.numeric_input(X)
        missing = np.isnan(inputs).any(axis=0)
        if missing.any():
            raise MissingValueUnsupported(tuple(np.asarray(schema.feature_names)[missing]))
        outputs = self._model.output(X)
        classes = resolve_classes(outputs, schema, class_indices=class_indices)
        chosen = np.zeros(len(X), dtype=np.int64) if classes is None else classes
        values = self._coef[chosen] * (inputs - self._mean)
        base = self._base[chosen]
        return assemble_explanation(schema, outputs, classes, method=self.method,
                                    output_space=self.output_space, base_values=base,
                                    values=values, started=started)
