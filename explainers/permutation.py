"""Model-agnostic interventional SHAP: exact by coalitions for few features, else sampled.

The value of a coalition S for row x is the mean model output over the background rows
with the features in S taken from x. With at most `max_exact_features` features every
coalition is evaluated and the Shapley values are exact; beyond that, antithetic
permutations (each followed by its reverse) estimate them. Either way the attributions
add up exactly: the empty coalition is the background mean and the full one the output.
"""

from __future__ import annotations

import math
import time

import numpy as np

from explainers.encoding import checked_matrix
from explainers.errors import EmptyBackground
from explainers.outputs import (
    assemble_explanation,
    empty_explanation,
    resolve_classes,
)
from explainers.protocols import ScoringModel
from explainers.types import Explanation, FloatMatrix, IntVector, OutputSpace

EXACT_SHAP = "exact_shap"
PERMUTATION_SHAP = "permutation_shap"


class PermutationExplainer:
    """Interventional Shapley values of any `ScoringModel` against a background sample."""

    def __init__(self, model: ScoringModel, background: FloatMatrix, *, seed: int = 0,
                 max_background: int = 100, max_exact_features: int = 10,
                 n_permutations: int = 10, max_rows_per_call: int = 200_000) -> None:
        """Prepare the coalitions to evaluate.

        Args:
            model: the model to explain, in its own output space.
            background: encoded reference rows; more than `max_background` are
                subsampled deterministically from `seed`.
            seed: fixes the background subsample and the permutations, so a row is
                always explained the same way.
            max_background: background rows kept.
            max_exact_features: up to this many features, enumerate every coalition.
            n_permutations: permutations when sampling, rounded up to an even number
                (each permutation is paired with its reverse).
            max_rows_per_call: bound on the rows of one model call (memory).
        """
        schema = model.schema
        background = checked_matrix(background, schema)
        if len(background) == 0:
            raise EmptyBackground()
        rng = np.random.default_rng(seed)
        if len(background) > max_background:
            keep = np.sort(rng.choice(len(background), max_background, replace=False))
            background = background[keep]
        self._model = model
        self._background = background
        self.output_space: OutputSpace = model.output_space
        self._base = model.output(background).mean(axis=0)
        self._max_rows_per_call = max_rows_per_call
        n_features = len(schema.features)
        self._exact = n_features <= max_exact_features
        self.method = EXACT_SHAP if self._exact else PERMUTATION_SHAP
        if self._exact:
            self._coalitions = _all_coalitions(n_features)
            self._without, self._with, self._weights = _exact_terms(n_features)
        else:
            pairs = max(1, math.ceil(n_permutations / 2))
            forward = [rng.permutation(n_features) for _ in range(pairs)]
            self._orders = np.array([p for f in forward for p in (f, f[::-1])])
            self._coalitions = _prefix_coalitions(self._orders)

    @property
    def background(self) -> FloatMatrix:
        """The (subsampled) background rows in use."""
        return self._background

    def explain(self, X: FloatMatrix, *, class_indices: IntVector | None = None) -> Explanation:
        """Explain each row; for multiclass, the given class per row (default: predicted)."""
        started = time.perf_counter()
        schema = self._model.schema
        X = checked_matrix(X, schema)
        if len(X) == 0:
            return empty_explanation(schema, method=self.method, output_space=self.output_space)
        outputs = self._model.output(X)
        classes = resolve_classes(outputs, schema, class_indices=class_indices)
        values = np.empty((len(X), len(schema.features), schema.n_outputs))
        per_row = max(1, len(self._coalitions) * len(self._background))
        chunk = max(1, self._max_rows_per_call // per_row)
        for start in range(0, len(X), chunk):
            rows = slice(start, start + chunk)
            coalition_values = self._coalition_values(X[rows])
            if self._exact:
                values[rows] = self._exact_shapley(coalition_values, outputs[rows])
            else:
                values[rows] = self._sampled_shapley(coalition_values, outputs[rows])
        chosen = np.zeros(len(X), dtype=np.int64) if classes is None else classes
        picked = values[np.arange(len(X)), :, chosen]
        base = self._base[chosen]
        return assemble_explanation(schema, outputs, classes, method=self.method,
                                    output_space=self.output_space, base_values=base,
                                    values=picked, started=started)

    def _coalition_values(self, X: FloatMatrix) -> np.ndarray:
        """Mean output over the background for each row and coalition: (n, K, C)."""
        n, n_features = X.shape
        n_coalitions = len(self._coalitions)
        if n_coalitions == 0:
            return np.zeros((n, 0, len(self._base)))
        mixed = np.where(self._coalitions[None, :, None, :], X[:, None, None, :],
                         self._background[None, None, :, :])
        # one model call for the whole chunk of rows
        scored = self._model.output(mixed.reshape(-1, n_features))
        means: np.ndarray = scored.reshape(n, n_coalitions, len(self._background), -1).mean(axis=2)
        return means

    def _exact_shapley(self, inner: np.ndarray, outputs: FloatMatrix) -> np.ndarray:
        n, n_outputs = outputs.shape
        table = np.empty((n, len(inner[0]) + 2, n_outputs))
        table[:, 0] = self._base
        table[:, 1:-1] = inner
        table[:, -1] = outputs
        # phi_j = sum over S without j of w(|S|) * (v(S + j) - v(S))
        gains = table[:, self._with] - table[:, self._without]  # (n, M, 2^(M-1), C)
        values: np.ndarray = np.einsum("nmsc,ms->nmc", gains, self._weights)
        return values

    def _sampled_shapley(self, inner: np.ndarray, outputs: FloatMatrix) -> np.ndarray:
        n, n_outputs = outputs.shape
        n_orders, n_features = self._orders.shape
        steps = inner.reshape(n, n_orders, n_features - 1, n_outputs)
        values: np.ndarray = np.zeros((n, n_features, n_outputs))
        for p, order in enumerate(self._orders):
            path = np.concatenate(
                (np.broadcast_to(self._base, (n, 1, n_outputs)), steps[:, p],
                 outputs[:, None, :]), axis=1)
            values[:, order] += np.diff(path, axis=1)
        return values / float(n_orders)


def _all_coalitions(n_features: int) -> np.ndarray:
    """Every coalition except the empty and the full one, as (2^M - 2, M) masks.

    Coalition s holds feature j when bit j of s is set; row s - 1 of the result is s.
    """
    codes = np.arange(1, 2**n_features - 1)
    return ((codes[:, None] >> np.arange(n_features)) & 1).astype(bool)


def _exact_terms(n_features: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coalition codes without/with each feature and their Shapley weights: (M, 2^(M-1))."""
    codes = np.arange(2**n_features)
    without = np.array([codes[(codes >> j) & 1 == 0] for j in range(n_features)])
    with_j = without | (1 << np.arange(n_features))[:, None]
    sizes = np.array([bin(c).count("1") for c in range(2**n_features)])[without]
    factorial = np.array([math.factorial(k) for k in range(n_features + 1)], dtype=np.float64)
    weights = factorial[sizes] * factorial[n_features - sizes - 1] / factorial[n_features]
    return without, with_j, weights


def _prefix_coalitions(orders: np.ndarray) -> np.ndarray:
    """Masks of the proper non-empty prefixes of each order: (P * (M - 1), M)."""
    n_orders, n_features = orders.shape
    ranks = np.empty_like(orders)
    ranks[np.arange(n_orders)[:, None], orders] = np.arange(n_features)
    sizes = np.arange(1, n_features)
    masks = ranks[:, None, :] < sizes[None, :, None]  # (P, M - 1, M)
    return masks.reshape(-1, n_features)
