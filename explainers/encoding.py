"""Records and frames to the float matrix the explainers take, and back.

Numeric features keep their value (NaN = missing); categorical features become the index
of the value in `FeatureSpec.categories` (NaN = missing or unseen).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from explainers.errors import InputShapeMismatch, InvalidFeatureValue, SchemaMismatch
from explainers.types import CategoryValue, FeatureKind, FeatureSpec, FloatMatrix, ModelSchema

CategoryLookup = dict[object, int]


def category_lookup(categories: Sequence[CategoryValue]) -> CategoryLookup:
    """Map each category, and its string or numeric twin, to its index.

    JSON callers differ: one sends "3" for an integer category 3, another 3 for a string
    category "3". Exact values win over twins; the first category wins a tie.
    """
    lookup: CategoryLookup = {}
    for index, category in enumerate(categories):
        if not _is_nan(category):
            lookup.setdefault(category, index)
    for index, category in enumerate(categories):
        for twin in _twins(category):
            lookup.setdefault(twin, index)
    return lookup


def _twins(category: CategoryValue) -> tuple[object, ...]:
    if isinstance(category, str):
        try:
            number = float(category)
        except ValueError:
            return ()
        # float keys also match ints (3 == 3.0 and both hash alike)
        return (number,) if math.isfinite(number) else ()
    if isinstance(category, bool):
        return (str(category),)
    if isinstance(category, int):
        return (str(category), repr(float(category)))
    if _is_nan(category):
        return ()
    if float(category).is_integer():
        return (str(int(category)), repr(float(category)))
    return (repr(float(category)),)


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


class RowEncoder:
    """Encodes records of one schema; build it once per model to keep lookups warm."""

    __slots__ = ("_columns",)

    def __init__(self, schema: ModelSchema) -> None:
        self._columns: tuple[tuple[str, CategoryLookup | None], ...] = tuple(
            (f.name, category_lookup(f.categories) if f.kind is FeatureKind.CATEGORICAL
             else None)
            for f in schema.features
        )

    def encode(self, rows: Sequence[Mapping[str, object]]) -> FloatMatrix:
        """Encode records (None or an absent key = missing) as an (n, M) float matrix."""
        flat: list[float] = []
        append = flat.append
        nan = math.nan
        for row in rows:
            for name, lookup in self._columns:
                value = row.get(name)
                if value is None:
                    append(nan)
                elif lookup is None:
                    append(_numeric(name, value))
                else:
                    append(_category_index(name, lookup, value))
        return np.array(flat, dtype=np.float64).reshape(len(rows), len(self._columns))


def _numeric(name: str, value: object) -> float:
    if isinstance(value, float):
        return value
    if isinstance(value, int | str | np.number | np.bool_):
        try:
            return float(value)
        except ValueError:
            raise InvalidFeatureValue(name, "not a number") from None
    raise InvalidFeatureValue(name, f"expected a number, got {type(value).__name__}")


def _category_index(name: str, lookup: CategoryLookup, value: object) -> float:
    try:
        index = lookup.get(value)
    except TypeError:
        raise InvalidFeatureValue(name, f"unhashable {type(value).__name__}") from None
    return math.nan if index is None else float(index)


def encode_rows(rows: Sequence[Mapping[str, object]], schema: ModelSchema) -> FloatMatrix:
    """Encode records as an (n, M) float matrix in schema order."""
    return RowEncoder(schema).encode(rows)


def decode_value(spec: FeatureSpec, encoded: float) -> object:
    """Turn one encoded value back into the feature value (None for missing)."""
    if math.isnan(encoded):
        return None
    if spec.kind is FeatureKind.NUMERIC:
        return float(encoded)
    index = int(encoded)
    if index != encoded or not 0 <= index < len(spec.categories):
        raise InvalidFeatureValue(spec.name, "encoded category index out of range")
    return spec.categories[index]


def encode_frame(df: pd.DataFrame, schema: ModelSchema) -> FloatMatrix:
    """Encode a training or background frame (columns by name) as an (n, M) float matrix."""
    out = np.empty((len(df), len(schema.features)), dtype=np.float64)
    for j, spec in enumerate(schema.features):
        if spec.name not in df.columns:
            raise SchemaMismatch(f"frame has no column {spec.name!r}")
        column = df[spec.name]
        if spec.kind is FeatureKind.CATEGORICAL:
            out[:, j] = _encode_categorical_column(spec, column)
        else:
            out[:, j] = _encode_numeric_column(spec.name, column)
    return out


def _encode_numeric_column(name: str, column: pd.Series) -> np.ndarray:
    if isinstance(column.dtype, pd.CategoricalDtype):
        column = column.astype(object)
    try:
        numeric = pd.to_numeric(column, errors="raise")
    except (TypeError, ValueError):
        raise InvalidFeatureValue(name, "column is not numeric") from None
    return np.asarray(numeric.to_numpy(dtype=np.float64, na_value=np.nan))


def _encode_categorical_column(spec: FeatureSpec, column: pd.Series) -> np.ndarray:
    # One lookup per distinct value, not per row: background and training frames are big.
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    lookup = category_lookup(spec.categories)
    mapped = np.array(
        [_category_index(spec.name, lookup, _python_scalar(u)) for u in uniques] + [math.nan],
        dtype=np.float64,
    )
    encoded: np.ndarray = mapped[codes]  # the sentinel -1 picks the trailing NaN
    return encoded


def _python_scalar(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value


def decode_frame(X: FloatMatrix, schema: ModelSchema) -> pd.DataFrame:
    """Decode an encoded matrix into a frame of raw values (NaN = missing), for pipelines.

    Categorical columns with numeric categories come back as float columns, others as
    object columns holding the category values; missing is NaN in both, which is what
    pandas and scikit-learn encoders treat as missing.
    """
    columns: dict[str, object] = {}
    for j, spec in enumerate(schema.features):
        if spec.kind is FeatureKind.NUMERIC:
            columns[spec.name] = X[:, j]
        else:
            columns[spec.name] = category_values(spec)[_index_column(X[:, j],
                                                                     len(spec.categories))]
    return pd.DataFrame(columns, copy=False)


def category_values(spec: FeatureSpec) -> np.ndarray:
    """Return the categories with a trailing missing marker, for fancy indexing.

    Numeric categories give a float array (NaN last), others an object array (NaN last).
    """
    if spec.categories and all(_is_number(c) for c in spec.categories):
        return np.array([*map(float, spec.categories), math.nan], dtype=np.float64)
    values = np.empty(len(spec.categories) + 1, dtype=object)
    values[:-1] = list(spec.categories)
    values[-1] = math.nan
    return values


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _index_column(column: np.ndarray, n_categories: int) -> np.ndarray:
    """Turn encoded indices into integer positions; missing or invalid → -1 (the marker)."""
    valid = ~np.isnan(column)
    index = np.full(column.shape, -1, dtype=np.intp)
    index[valid] = column[valid].astype(np.intp)
    index[(index < 0) | (index >= n_categories)] = -1
    return index


def category_index_table(column: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Map encoded category indices through `table` (one entry per category), NaN stays NaN.

    Out-of-range indices also become NaN, so a stale encoding reads as missing rather
    than as some other category.
    """
    result = np.full(column.shape, np.nan, dtype=np.float64)
    valid = ~np.isnan(column)
    index = column[valid].astype(np.intp)
    in_range = (index >= 0) & (index < len(table))
    picked = np.full(index.shape, np.nan, dtype=np.float64)
    picked[in_range] = table[index[in_range]]
    result[valid] = picked
    return result


def checked_matrix(X: FloatMatrix, schema: ModelSchema) -> FloatMatrix:
    """Return X as a C-contiguous float64 (n, M) matrix, or raise InputShapeMismatch."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(schema.features):
        raise InputShapeMismatch(len(schema.features), X.shape[-1] if X.ndim else 0)
    return np.ascontiguousarray(X)
