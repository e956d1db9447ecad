"""LightGBM boosters as `ScoringModel`s, and schema inference from a booster."""

from __future__ import annotations

from collections.abc import Sequence

import lightgbm
import numpy as np
import pandas as pd

from explainers.encoding import category_index_table, category_lookup, checked_matrix
from explainers.errors import SchemaMismatch, UnsupportedModel
from explainers.lightgbm_header import LightGBMHeader, read_header
from explainers.lightgbm_single_row import SingleRowScorer
from explainers.outputs import (
    classification_predictions,
    regression_predictions,
    scoring_errors,
)
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


# Batches under this many rows are scored on the calling thread alone.
_SINGLE_THREAD_ROWS = 32

# What LightGBM raises for rows it cannot score.
SCORING_ERRORS: tuple[type[Exception], ...] = (lightgbm.basic.LightGBMError, ValueError,
                                               TypeError)


class LightGBMModel:
    """A LightGBM booster scoring our encoded rows; categories are mapped to its codes."""

    def __init__(self, booster: lightgbm.Booster, schema: ModelSchema) -> None:
        self.booster = booster
        self.schema = schema
        self.header = read_header(booster)
        self.output_space: OutputSpace = self.header.output_space
        _check_names(booster.feature_name(), schema)
        if self.header.task is not schema.task:
            raise SchemaMismatch(f"the booster's objective is {self.header.task}, the schema "
                                 f"says {schema.task}")
        if schema.task is Task.MULTICLASS and len(schema.classes) != self.header.num_class:
            raise SchemaMismatch(f"{self.header.num_class} classes in the booster, "
                                 f"{len(schema.classes)} in the schema")
        self._code_tables = _code_tables(booster, self.header.categorical, schema)
        with scoring_errors("lightgbm.Booster", SCORING_ERRORS):
            self._single_row = SingleRowScorer(booster, len(schema.features),
                                               schema.n_outputs)

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
        inputs = self.numeric_input(X)
        with scoring_errors("lightgbm.Booster", SCORING_ERRORS):
            if len(inputs) == 1:  # the single-row explain path: LightGBM's fast call
                raw = self._single_row(inputs[0])
            else:
                raw = np.asarray(self.booster.predict(inputs, raw_score=True,
                                                      num_threads=_threads(len(inputs))),
                                 dtype=np.float64)
        return raw.reshape(len(X), self.schema.n_outputs)

    def predict(self, X: FloatMatrix) -> Predictions:
        """Return probabilities (classification) or predicted values (regression)."""
        inputs = self.numeric_input(X)
        with scoring_errors("lightgbm.Booster", SCORING_ERRORS):
            predicted = np.asarray(
                self.booster.predict(inputs, num_threads=_threads(len(inputs))),
                dtype=np.float64)
        if self.schema.task is Task.REGRESSION:
            return regression_predictions(predicted)
        if self.schema.task is Task.BINARY:
            predicted = np.column_stack((1.0 - predicted, predicted))
        return classification_predictions(predicted.reshape(len(X), -1), self.schema.task)


def _threads(n_rows: int) -> int:
    # A few rows score faster on the calling thread than through LightGBM's OpenMP team,
    # whose barrier waits for every thread to be scheduled (ms on a busy 2-core host);
    # 0 is LightGBM's default (OpenMP's thread count).
    return 1 if n_rows < _SINGLE_THREAD_ROWS else 0


def _check_names(names: Sequence[str], schema: ModelSchema) -> None:
    if len(names) != len(schema.features):
        raise SchemaMismatch(f"{len(names)} features in the booster, "
                             f"{len(schema.features)} in the schema")
    for position, (theirs, spec) in enumerate(zip(names, schema.features, strict=True)):
        # LightGBM replaces whitespace in feature names with underscores
        if theirs != spec.name and theirs != "_".join(spec.name.split()):
            raise SchemaMismatch(f"feature {position} is {theirs!r} in the booster, "
                                 f"{spec.name!r} in the schema")


def _code_tables(booster: lightgbm.Booster, categorical: tuple[int, ...],
                 schema: ModelSchema) -> tuple[tuple[int, np.ndarray], ...]:
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
    header = read_header(booster)
    task = header.task
    names = booster.feature_name()
    categorical = header.categorical
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
    return ModelSchema(tuple(specs), task, _classes(header, classes))


def _classes(header: LightGBMHeader,
             classes: Sequence[CategoryValue] | None) -> tuple[CategoryValue, ...]:
    if header.task is Task.REGRESSION:
        return ()
    if classes is not None:
        return tuple(classes)
    return (0, 1) if header.task is Task.BINARY else tuple(range(header.num_class))
