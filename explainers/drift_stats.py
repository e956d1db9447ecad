"""Distribution profiles of training data (the drift baseline): pure numpy."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from explainers.types import FloatVector


@dataclass(frozen=True, slots=True)
class NumericProfile:
    """Quantile bins and moments of a numeric sample."""

    edges: tuple[float, ...]
    proportions: tuple[float, ...]
    mean: float
    std: float
    min: float
    max: float
    missing_rate: float


@dataclass(frozen=True, slots=True)
class CategoricalProfile:
    """Frequencies of the top categories, the rest pooled as `other`."""

    frequencies: dict[str, float]
    other: float
    missing_rate: float


def profile_numeric(values: FloatVector, *, bins: int = 10) -> NumericProfile:
    """Profile a numeric sample (NaN = missing) with `bins` quantile bins.

    Repeated quantiles (discrete or heavily tied data) collapse into fewer, wider bins,
    so each bin edge is distinct and every bin is non-empty in training.
    """
    values = np.asarray(values, dtype=np.float64)
    present = values[~np.isnan(values)]
    missing_rate = 1.0 - present.size / values.size if values.size else 0.0
    if present.size == 0:
        return NumericProfile((), (), 0.0, 0.0, 0.0, 0.0, missing_rate)
    edges = np.unique(np.quantile(present, np.linspace(0.0, 1.0, bins + 1)))
    if edges.size == 1:
        edges = np.array([edges[0], edges[0]])
    counts = bin_counts(present, edges)
    return NumericProfile(
        edges=tuple(float(e) for e in edges),
        proportions=tuple(float(c) for c in counts / counts.sum()),
        mean=float(present.mean()), std=float(present.std()),
        min=float(present.min()), max=float(present.max()), missing_rate=missing_rate,
    )


def bin_counts(values: FloatVector, edges: FloatVector) -> np.ndarray:
    """Count values per bin; bins are [e_i, e_{i+1}) except the last, which is closed.

    Values below the first edge count in the first bin and above the last in the last
    one, so live data outside the training range still lands somewhere (out-of-range
    is reported separately).
    """
    n_bins = max(len(edges) - 1, 1)
    index = np.searchsorted(edges[1:-1], values, side="right")
    return np.bincount(np.clip(index, 0, n_bins - 1), minlength=n_bins).astype(np.float64)


def profile_categorical(values: Sequence[object], *, top_k: int = 20) -> CategoricalProfile:
    """Profile a categorical sample (None/NaN = missing) keeping the top_k categories."""
    present = [str(v) for v in values if v is not None and not _is_nan(v)]
    total = len(values)
    missing_rate = 1.0 - len(present) / total if total else 0.0
    if not present:
        return CategoricalProfile({}, 0.0, missing_rate)
    counts = Counter(present)
    top = counts.most_common(top_k)
    frequencies = {category: count / len(present) for category, count in top}
    return CategoricalProfile(frequencies, max(0.0, 1.0 - sum(frequencies.values())),
                              missing_rate)


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)
