"""Fitted scikit-learn estimators and Pipelines as `ScoringModel`s."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import is_classifier
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV, SGDClassifier
from sklearn.utils.validation import check_is_fitted

from explainers.encoding import (
    category_index_table,
    category_lookup,
    category_values,
    checked_matrix,
    decode_frame,
)
from explainers.errors import SchemaMismatch, UnsupportedModel
from explainers.outputs import (
    classification_predictions,
    regression_predictions,
    scoring_errors,
)
from explainers.schema_inference import python_value
from explainers.types import (
    FeatureKind,
    FloatMatrix,
    ModelSchema,
    OutputSpace,
    Predictions,
    Task,
)

# What scikit-learn raises for rows it cannot score (NaN where unsupported, unknown
# categories with handle_unknown="error", ...).
SCORING_ERRORS: tuple[type[Exception], ...] = (ValueError, TypeError, ArithmeticError)

# Regression losses whose raw output is log(prediction), so MARGIN = log(predict(X)).
LOG_LINK_LOSSES = frozenset({"poisson", "gamma"})


def is_log_odds_classifier(estimator: object) -> bool:
    """Tell whether `decision_function` of this classifier is the log-odds (binary)."""
    if isinstance(estimator, LogisticRegression | LogisticRegressionCV):
        return True
    if isinstance(estimator, GradientBoostingClassifier | HistGradientBoostingClassifier
                               | SGDClassifier):
        return getattr(estimator, "loss", None) == "log_loss"
    return False


def default_output_space(estimator: object, task: Task) -> OutputSpace:
    """Output space for an estimator: log-odds/logits where the model has them natively."""
    if task is Task.REGRESSION:
        return OutputSpace.VALUE
    if is_log_odds_classifier(estimator):
        return OutputSpace.LOG_ODDS if task is Task.BINARY else OutputSpace.MARGIN
    return OutputSpace.PROBABILITY


class SklearnModel:
    """A fitted estimator or Pipeline scoring our encoded rows.

    Estimators fitted on a DataFrame (they have `feature_names_in_`, as every Pipeline
    with a ColumnTransformer does) get a DataFrame of decoded raw values; others get the
    numeric matrix, where a categorical feature with numeric categories carries the
    category value and one with text categories carries its index.
    """

    def __init__(self, estimator: object, schema: ModelSchema, *,
                 output_space: OutputSpace | None = None) -> None:
        name = type(estimator).__name__
        if not hasattr(estimator, "predict"):
            raise UnsupportedModel(name, "not a scikit-learn estimator (no predict)")
        try:
            check_is_fitted(estimator)
        except NotFittedError as exc:
            raise UnsupportedModel(name, "the estimator is not fitted") from exc
        except TypeError as exc:
            raise UnsupportedModel(name, "not a scikit-learn estimator") from exc
        self.estimator = estimator
        self.schema = schema
        self._columns = _input_columns(estimator, schema)
        self.schema_positions: np.ndarray | None = None
        """Schema index of each estimator input column; None when the orders agree."""
        if self._columns is not None and self._columns != schema.feature_names:
            self.schema_positions = np.array(
                [schema.feature_names.index(c) for c in self._columns], dtype=np.int64)
        self._classifier = _check_task(estimator, schema)
        self.output_space = output_space or default_output_space(estimator, schema.task)
        _check_output_space(estimator, schema.task, self.output_space)
        self._value_tables = tuple(
            (j, category_values(spec)[:-1].astype(np.float64))
            for j, spec in enumerate(schema.features)
            if spec.kind is FeatureKind.CATEGORICAL and category_values(spec).dtype != object
        )

    def numeric_input(self, X: FloatMatrix) -> FloatMatrix:
        """Return the numeric matrix the estimator sees (category index → numeric value)."""
        X = checked_matrix(X, self.schema)
        if not self._value_tables:
            return X
        out = X.copy()
        for j, table in self._value_tables:
            out[:, j] = category_index_table(X[:, j], table)
        return out

    def model_input(self, X: FloatMatrix) -> FloatMatrix | pd.DataFrame:
        """Return what the estimator is called with: a decoded frame or the numeric matrix."""
        if self._columns is None:
            return self.numeric_input(X)
        frame = decode_frame(checked_matrix(X, self.schema), self.schema)
        return frame if self._columns == self.schema.feature_names else frame[list(self._columns)]

    def output(self, X: FloatMatrix) -> FloatMatrix:
        """Return the model output in `output_space`, shape (n, schema.n_outputs)."""
        n = len(X)
        data = self.model_input(X)
        estimator: Any = self.estimator
        with scoring_errors(type(estimator).__name__, SCORING_ERRORS):
            if self.output_space is OutputSpace.PROBABILITY:
                proba = np.asarray(estimator.predict_proba(data), dtype=np.float64)
                return proba[:, 1:] if self.schema.task is Task.BINARY else proba
            if self._classifier:
                margin = estimator.decision_function(data)
                return np.asarray(margin, dtype=np.float64).reshape(n, self.schema.n_outputs)
            predicted = np.asarray(estimator.predict(data), dtype=np.float64).reshape(n, 1)
        return np.log(predicted) if self.output_space is OutputSpace.MARGIN else predicted

    def predict(self, X: FloatMatrix) -> Predictions:
        """Return probabilities (classification) or predicted values (regression)."""
        data = self.model_input(X)
        estimator: Any = self.estimator
        with scoring_errors(type(estimator).__name__, SCORING_ERRORS):
            if self._classifier:
                proba = np.asarray(estimator.predict_proba(data), dtype=np.float64)
                return classification_predictions(proba, self.schema.task)
            return regression_predictions(estimator.predict(data))


def _input_columns(estimator: object, schema: ModelSchema) -> tuple[str, ...] | None:
    names = getattr(estimator, "feature_names_in_", None)
    if names is None:
        n_in = getattr(estimator, "n_features_in_", len(schema.features))
        if n_in != len(schema.features):
            raise SchemaMismatch(f"{n_in} features in the estimator, "
                                 f"{len(schema.features)} in the schema")
        return None
    columns = tuple(str(c) for c in names)
    if sorted(columns) != sorted(schema.feature_names):
        missing = sorted(set(columns) ^ set(schema.feature_names))
        raise SchemaMismatch(f"features differ between estimator and schema: {missing}")
    return columns


def _check_task(estimator: object, schema: ModelSchema) -> bool:
    classifier = bool(is_classifier(estimator))
    if classifier != (schema.task is not Task.REGRESSION):
        raise SchemaMismatch(f"{type(estimator).__name__} does not fit task {schema.task}")
    if not classifier:
        return False
    classes = getattr(estimator, "classes_", None)
    if classes is None or np.ndim(classes) != 1:
        raise UnsupportedModel(type(estimator).__name__, "multi-output classification")
    expected = 2 if schema.task is Task.BINARY else len(schema.classes)
    if len(classes) != expected:
        raise SchemaMismatch(f"{len(classes)} classes in the estimator, {expected} expected")
    if schema.classes:
        # labels compare like categories: the manifest may say "1" for the class 1
        lookup = category_lookup(schema.classes)
        if [lookup.get(python_value(c)) for c in classes] != list(range(len(classes))):
            raise SchemaMismatch("class labels or their order differ between estimator and "
                                 "schema")
    if not hasattr(estimator, "predict_proba"):
        raise UnsupportedModel(type(estimator).__name__, "classifier without predict_proba")
    return True


def _check_output_space(estimator: object, task: Task, space: OutputSpace) -> None:
    name = type(estimator).__name__
    if task is Task.REGRESSION:
        log_link = getattr(estimator, "loss", None) in LOG_LINK_LOSSES
        if space is OutputSpace.VALUE or (space is OutputSpace.MARGIN and log_link):
            return
    elif space is OutputSpace.PROBABILITY or (hasattr(estimator, "decision_function") and (
        space is OutputSpace.MARGIN or (space is OutputSpace.LOG_ODDS and task is Task.BINARY)
    )):
        return
    raise UnsupportedModel(name, f"no {space} output for task {task}")
