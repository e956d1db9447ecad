"""LightGBM boosters as `ScoringModel`s, and schema inference from a booster."""

from __future__ import annotations

from collections.abc import Sequence

import lightgbm
import numpy as np
import pandas as pd

from explainers.encoding import category_index_table, category_lookup, checked_matrix
from explainers.errors import SchemaMismatch, UnsupportedModel
from explainers.outputs import classification_predictions, regression_predictions
from explainers.schema_inference import as_category, frame_categories
from explainers.types import (
    CategoryValue,
    FeatureKind,
    FeatureSpec,
    FloatMatrix,
    ModelSchema,
    OutputSpace,
    Predictions,
    Task,
)

# Objective → (task, output space of the raw score). Objectives not listed (ranking,
# custom, cross_entropy_lambda) have no task of ours or no known link.
_OBJECTIVES: dict[str, tuple[Task, OutputSpace]] = {
    "binary": (Task.BINARY, OutputSpace.LOG_ODDS),
    "cross_entropy": (Task.BINARY, OutputSpace.LOG_ODDS),
    "multiclass": (Task.MULTICLASS, OutputSpace.MARGIN),
    "multiclassova": (Task.MULTICLASS, OutputSpace.MARGIN),
    "regression": (Task.REGRESSION, OutputSpace.VALUE),
    "regression_l1": (Task.REGRESSION, OutputSpace.VALUE),
    "huber": (Task.REGRESSION, OutputSpace.VALUE),
    "fair": (Task.REGRESSION, OutputSpace.VALUE),
    "quantile": (Task.REGRESSION, OutputSpace.VALUE),
    "mape": (Task.REGRESSION, OutputSpace.VALUE),
    # log link: the raw score is log(prediction)
    "poisson": (Task.REGRESSION, OutputSpace.MARGIN),
    "gamma": (Task.REGRESSION, OutputSpace.MARGIN),
    "tweedie": (Task.REGRESSION, OutputSpace.MARGIN),
}


def lightgbm_objective(booster: lightgbm.Booster) -> tuple[Task, OutputSpace]:
    """Return the task and raw-score output space of a booster's objective."""
    objective = str(booster.params.get("objective") or _header_value(booster, "objective"))
    name = objective.split(maxsplit=1)[0] if objective.strip() else "none"
    if name not in _OBJECTIVES:
        raise UnsupportedModel("lightgbm.Booster", f"objective {name!r}")
    return _OBJECTIVES[name]


def _header_value(booster: lightgbm.Booster, key: str) -> str:
    # Boosters built in this process without params still carry the model text header;
    # one iteration of it is enough and cheap.
    for line in booster.model_to_string(num_iteration=1).splitlines():
        if line.startswith(f"{key}="):
            return line.split("=", 1)[1]
    return ""


def lightgbm_categorical_features(booster: lightgbm.Booster) -> tuple[int, ...]:
    """Return the column indices LightGBM treats as categorical."""
    raw = booster.params.get("categorical_feature", [])
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    names = booster.feature_name()
    indices: list[int] = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        if text.startswith("name:"):
            indices.extend(names.index(n) for n in text[5:].split(",") if n in names)
        elif text.lstrip("-").isdigit():
            indices.append(int(text))
        elif text in names:
            indices.append(names.index(text))
    return tuple(sorted(set(indices)))


def _pandas_categories(booster: lightgbm.Booster, categorical: tuple[int, ...], *,
                       pandas_columns: Sequence[int] | None = None,
                       schema: ModelSchema | None = None) -> dict[int, list[object]]:
    """Pair LightGBM's pandas category lists with feature indices.

    LightGBM keeps one list per category-dtype training column, in column order, without
    saying which columns those were. The training frame's dtypes tell; without it, the
    lists pair with the categorical features when the counts agree, else each list goes
    to the next categorical feature whose schema categories it contains.
    """
    lists = [list(values) for values in getattr(booster, "pandas_categorical", None) or []]
    if not lists:
        return {}
    if pandas_columns is not None and len(pandas_columns) == len(lists):
        return dict(zip(pandas_columns, lists, strict=True))
    if len(lists) == len(categorical):
        return dict(zip(categorical, lists, strict=True))
    pairs: dict[int, list[object]] = {}
    if schema is not None:
        for j in categorical:
            wanted = schema.features[j].categories
            if len(pairs) < len(lists) and _contains(lists[len(pairs)], wanted):
                pairs[j] = lists[len(pairs)]
    if len(pairs) != len(lists):
        raise UnsupportedModel("lightgbm.Booster",
                               "cannot tell which features the pandas category lists belong to")
    return pairs


def _contains(values: list[object], categories: Sequence[CategoryValue]) -> bool:
    lookup = category_lookup(tuple(as_category(v) for v in values))
    return bool(categories) and all(c in lookup for c in categories)


class LightGBMModel:
    """A LightGBM booster scoring our encoded rows; categories are mapped to its codes."""

    def __init__(self, booster: lightgbm.Booster, schema: ModelSchema) -> None:
        self.booster = booster
        self.schema = schema
        task, self.output_space = lightgbm_objective(booster)
        _check_names(booster.feature_name(), schema)
        if task is not schema.task:
            raise SchemaMismatch(f"the booster's objective is {task}, the schema says "
                                 f"{schema.task}")
        n_classes = int(booster.params.get("num_class", 1) or 1)
        if task is Task.MULTICLASS and len(schema.classes) != n_classes:
            raise SchemaMismatch(f"{n_classes} classes in the booster, "
                                 f"{len(schema.classes)} in the schema")
        self._code_tables = _code_tables(booster, schema)

    def numeric_input(self, X: FloatMatrix) -> FloatMatrix:
        """Map our encoding to the booster's input (category index → LightGBM code)."""
        X = checked_matrix(X, self.schema)
        if not self._code_tables:
            return np.ascontiguousarray(X, dtype=np.float64)
        out = np.array(X, dtype=np.float64, copy=True)
        for j, table in self._code_tables:
            out[:, j] = category_index_table(X[:, j], table)
        return out

    def output(self, X: FloatMatrix) -> FloatMatrix:
        """Return the raw score: log-odds, softmax logits, or the regression margin/value."""
        raw = self.booster.predict(self.numeric_input(X), raw_score=True)
        return np.asarray(raw, dtype=np.float64).reshape(len(X), self.schema.n_outputs)

    def predict(self, X: FloatMatrix) -> Predictions:
        """Return probabilities (classification) or predicted values (regression)."""
        predicted = np.asarray(self.booster.predict(self.numeric_input(X)), dtype=np.float64)
        if self.schema.task is Task.REGRESSION:
            return regression_predictions(predicted)
        if self.schema.task is Task.BINARY:
            predicted = np.column_stack((1.0 - predicted, predicted))
        return classification_predictions(predicted.reshape(len(X), -1), self.schema.task)


def _check_names(names: Sequence[str], schema: ModelSchema) -> None:
    if len(names) != len(schema.features):
        raise SchemaMismatch(f"{len(names)} features in the booster, "
                             f"{len(schema.features)} in the schema")
    for position, (theirs, spec) in enumerate(zip(names, schema.features, strict=True)):
        # LightGBM replaces whitespace in feature names with underscores
        if theirs != spec.name and theirs != "_".join(spec.name.split()):
            raise SchemaMismatch(f"feature {position} is {theirs!r} in the booster, "
                                 f"{spec.name!r} in the schema")


def _code_tables(booster: lightgbm.Booster,
                 schema: ModelSchema) -> tuple[tuple[int, np.ndarray], ...]:
    categorical = lightgbm_categorical_features(booster)
    pandas_lists = _pandas_categories(booster, categorical, schema=schema)
    tables = []
    for j, spec in enumerate(schema.features):
        if j in pandas_lists:
            if spec.kind is not FeatureKind.CATEGORICAL:
                raise SchemaMismatch(f"{spec.name!r} is a pandas category in the booster")
            lookup = category_lookup(tuple(as_category(v) for v in pandas_lists[j]))
            table = np.array([lookup.get(c, np.nan) for c in spec.categories], dtype=np.float64)
        elif spec.kind is FeatureKind.CATEGORICAL:
            # integer-coded categorical (or a numeric input): the code is the value itself
            table = np.array([_numeric_code(spec.name, c) for c in spec.categories],
                             dtype=np.float64)
        else:
            continue
        tables.append((j, table))
    return tuple(tables)


def _numeric_code(feature: str, category: CategoryValue) -> float:
    try:
        return float(category)
    except ValueError:
        raise SchemaMismatch(f"{feature!r} is integer-coded in the booster, but category "
                             f"{category!r} is not a number") from None


def infer_lightgbm_schema(booster: lightgbm.Booster, frame: pd.DataFrame | None = None, *,
                          classes: Sequence[CategoryValue] | None = None) -> ModelSchema:
    """Infer the schema of a booster: names, categorical features, task and classes.

    Categories come from the booster's pandas category lists, else from the training
    frame's distinct values, else from the codes LightGBM saw in training. The model
    decides which features are categorical.
    """
    task, _ = lightgbm_objective(booster)
    names = booster.feature_name()
    categorical = lightgbm_categorical_features(booster)
    pandas_columns = None
    if frame is not None:
        pandas_columns = [j for j, name in enumerate(names) if name in frame.columns
                          and isinstance(frame[name].dtype, pd.CategoricalDtype)]
    pandas_lists = _pandas_categories(booster, categorical, pandas_columns=pandas_columns)
    infos = booster.dump_model(num_iteration=1).get("feature_infos", {})
    specs = []
    for j, name in enumerate(names):
        if j not in categorical:
            specs.append(FeatureSpec(name, FeatureKind.NUMERIC))
            continue
        if j in pandas_lists:
            categories = tuple(as_category(v) for v in pandas_lists[j])
        elif frame is not None and name in frame.columns:
            categories = frame_categories(frame[name])
        else:
            seen = infos.get(name, {}).get("values", [])
            categories = tuple(sorted(int(v) for v in seen if int(v) >= 0))
        specs.append(FeatureSpec(name, FeatureKind.CATEGORICAL, categories))
    return ModelSchema(tuple(specs), task, _classes(booster, task, classes))


def _classes(booster: lightgbm.Booster, task: Task,
             classes: Sequence[CategoryValue] | None) -> tuple[CategoryValue, ...]:
    if task is Task.REGRESSION:
        return ()
    if classes is not None:
        return tuple(classes)
    n_classes = int(booster.params.get("num_class", 1) or 1)
    return (0, 1) if task is Task.BINARY else tuple(range(n_classes))
