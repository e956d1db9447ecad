"""Seeded datasets and comparison helpers for the explainer tests (no downloads)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.datasets import load_diabetes, make_classification

from explainers.types import Explanation, FeatureKind, FeatureSpec, ModelSchema, Task


@dataclass(frozen=True)
class Dataset:
    """Training rows, labels and the matching all-numeric schema."""

    X: np.ndarray
    y: np.ndarray
    schema: ModelSchema

    @property
    def test_rows(self) -> np.ndarray:
        return self.X[:40]

    @property
    def background(self) -> np.ndarray:
        return self.X[-60:]


def numeric_schema(n_features: int, task: Task, classes: tuple[int, ...] = ()) -> ModelSchema:
    features = tuple(FeatureSpec(f"x{j}", FeatureKind.NUMERIC) for j in range(n_features))
    return ModelSchema(features, task, classes)


def _with_missing(X: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = X.copy()
    for j in (0, 2):
        X[rng.random(len(X)) < 0.15, j] = np.nan
    return X


def _binary(missing: bool) -> Dataset:
    X, y = make_classification(n_samples=400, n_features=6, n_informative=4, random_state=0)
    X = _with_missing(X, 1) if missing else X
    return Dataset(X, y, numeric_schema(6, Task.BINARY, (0, 1)))


def _multiclass() -> Dataset:
    X, y = make_classification(n_samples=450, n_features=6, n_informative=4, n_classes=3,
                               n_clusters_per_class=1, random_state=3)
    return Dataset(X, y, numeric_schema(6, Task.MULTICLASS, (0, 1, 2)))


def _regression(missing: bool) -> Dataset:
    X, y = load_diabetes(return_X_y=True)
    X = X[:, :7]
    X = _with_missing(X, 2) if missing else X
    return Dataset(X, y, numeric_schema(7, Task.REGRESSION))


DATASETS: dict[str, Callable[[], Dataset]] = {
    "binary": lambda: _binary(False),
    "binary_nan": lambda: _binary(True),
    "multiclass": _multiclass,
    "regression": lambda: _regression(False),
    "regression_nan": lambda: _regression(True),
}


def assert_additive(explanation: Explanation, outputs: np.ndarray) -> None:
    """base + sum(values) == output (1e-6 relative) and outputs are the model's own."""
    np.testing.assert_allclose(explanation.outputs, outputs, rtol=1e-9, atol=1e-12)
    total = explanation.base_values + explanation.values.sum(axis=1)
    np.testing.assert_allclose(total, outputs, rtol=1e-6, atol=1e-6)


def shap_for_class(values: object, expected: object, classes: np.ndarray | None,
                   n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pick shap's attributions and expected value for the explained class of each row.

    shap returns (n, M) for one output and (n, M, C) for several; a binary model with
    two probability columns is explained on the positive class.
    """
    values = np.asarray(values)
    expected = np.atleast_1d(np.asarray(expected, dtype=np.float64))
    if values.ndim == 2:
        return values, np.full(n, expected[0])
    chosen = classes if classes is not None else np.ones(n, dtype=np.int64)
    return values[np.arange(n), :, chosen], expected[chosen]
