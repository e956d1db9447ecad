"""Schema inference for fitted scikit-learn estimators and Pipelines."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import is_classifier
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, TargetEncoder

from explainers.errors import SchemaMismatch, UnsupportedModel
from explainers.schema_inference import as_category, frame_categories, is_categorical_column
from explainers.types import CategoryValue, FeatureKind, FeatureSpec, ModelSchema, Task

_ENCODERS = (OneHotEncoder, OrdinalEncoder, TargetEncoder)


def infer_sklearn_schema(estimator: object, frame: pd.DataFrame | None = None, *,
                         classes: Sequence[CategoryValue] | None = None) -> ModelSchema:
    """Infer the schema of a fitted estimator from its attributes and the training frame.

    A feature is categorical when the frame's column is not numeric, when a leading
    ColumnTransformer sends it to a category encoder, or when HistGradientBoosting marks
    it categorical. Categories come from the frame, else from the fitted encoder.
    """
    names = _feature_names(estimator, frame)
    encoded = _encoder_categories(estimator, names)
    hgb_mask = getattr(estimator, "is_categorical_", None)
    specs = []
    for j, name in enumerate(names):
        column = frame[name] if frame is not None and name in frame.columns else None
        categorical = (
            name in encoded
            or (column is not None and is_categorical_column(column))
            or (hgb_mask is not None and bool(hgb_mask[j]))
        )
        if not categorical:
            specs.append(FeatureSpec(name, FeatureKind.NUMERIC))
        elif column is not None:
            specs.append(FeatureSpec(name, FeatureKind.CATEGORICAL, frame_categories(column)))
        elif name in encoded:
            specs.append(FeatureSpec(name, FeatureKind.CATEGORICAL, encoded[name]))
        else:
            raise SchemaMismatch(f"categories of {name!r} are unknown without training data")
    task, model_classes = _task(estimator)
    return ModelSchema(tuple(specs), task,
                       tuple(classes) if classes is not None else model_classes)


def _feature_names(estimator: object, frame: pd.DataFrame | None) -> tuple[str, ...]:
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:
        return tuple(str(n) for n in names)
    n_features = getattr(estimator, "n_features_in_", None)
    if n_features is None:
        raise UnsupportedModel(type(estimator).__name__, "not a fitted estimator")
    if frame is not None and frame.shape[1] == n_features:
        return tuple(str(c) for c in frame.columns)
    return tuple(f"x{i}" for i in range(int(n_features)))


def _task(estimator: object) -> tuple[Task, tuple[CategoryValue, ...]]:
    if not is_classifier(estimator):
        return Task.REGRESSION, ()
    labels = getattr(estimator, "classes_", None)
    if labels is None or np.ndim(labels) != 1:
        raise UnsupportedModel(type(estimator).__name__, "multi-output classification")
    classes = tuple(as_category(c) for c in labels)
    return (Task.BINARY if len(classes) == 2 else Task.MULTICLASS), classes


def _encoder_categories(estimator: object,
                        names: tuple[str, ...]) -> dict[str, tuple[CategoryValue, ...]]:
    first = estimator.steps[0][1] if isinstance(estimator, Pipeline) else estimator
    if not isinstance(first, ColumnTransformer):
        return {}
    found: dict[str, tuple[CategoryValue, ...]] = {}
    for _, transformer, columns in first.transformers_:
        encoder = _find_encoder(transformer)
        if encoder is None:
            continue
        for column, categories in zip(_column_names(columns, names), encoder.categories_,
                                      strict=False):
            found[column] = tuple(as_category(c) for c in categories if not _missing(c))
    return found


def _find_encoder(transformer: object) -> OneHotEncoder | OrdinalEncoder | TargetEncoder | None:
    steps = [s for _, s in transformer.steps] if isinstance(transformer, Pipeline) else [
        transformer]
    for step in steps:
        if isinstance(step, _ENCODERS) and hasattr(step, "categories_"):
            return step
    return None


def _column_names(columns: object, names: tuple[str, ...]) -> list[str]:
    if isinstance(columns, str):
        return [columns]
    if isinstance(columns, slice):
        return list(names[columns])
    selected = np.asarray(columns)
    if selected.dtype == bool:
        return [n for n, keep in zip(names, selected, strict=True) if keep]
    if np.issubdtype(selected.dtype, np.integer):
        return [names[i] for i in selected]
    return [str(c) for c in selected]


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))
