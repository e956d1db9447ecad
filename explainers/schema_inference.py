"""Reading categorical features and their categories off training frames."""

from __future__ import annotations

import numpy as np
import pandas as pd

from explainers.types import CategoryValue


def python_value(value: object) -> object:
    """Turn a numpy scalar into the plain Python value (JSON and manifests want those)."""
    return value.item() if isinstance(value, np.generic) else value


def is_categorical_column(column: pd.Series) -> bool:
    """Tell whether a training column holds categories rather than numbers."""
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return True
    return not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype))


def frame_categories(column: pd.Series) -> tuple[CategoryValue, ...]:
    """Return a column's categories: the dtype's own order, else sorted distinct values.

    Mixed types sort by their text, so the order is stable across runs.
    """
    if isinstance(column.dtype, pd.CategoricalDtype):
        values = list(column.cat.categories)
    else:
        values = list(pd.unique(column.dropna()))
        try:
            values.sort()
        except TypeError:
            values.sort(key=str)
    return tuple(as_category(v) for v in values)


def as_category(value: object) -> CategoryValue:
    """Turn a raw category (numpy scalar, bool, other object) into a category value."""
    scalar = python_value(value)
    if isinstance(scalar, bool):
        return int(scalar)
    if isinstance(scalar, str | int | float):
        return scalar
    return str(scalar)
