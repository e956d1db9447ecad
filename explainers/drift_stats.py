"""Drift statistics, pure numpy/scipy: training profiles and window-vs-baseline tests.

Wasserstein-1 on binned windows lives in `drift_binned`.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from explainers.types import FloatVector

PSI_EPSILON = 1e-4
"""Proportion substituted for an empty bin in PSI (either side), so a bin that is empty
in training but not live (a new category) gives a large, finite term: with 10 % of the
window there, the term is 0.1 · ln(0.1 / 1e-4) ≈ 0.69."""

FINE_BINS_PER_BIN = 10
"""Live windows keep this many quantile bins per PSI bin, for an accurate Wasserstein."""

TAIL_LEVELS = (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 3e-3, 5e-3, 7.5e-3)
"""Extra quantile levels at each end: live values are modelled as uniform within a bin,
which overstates Wasserstein in a wide extreme bin of a heavy-tailed feature (×1.7 on a
log-normal with percentile bins alone, within 4 % with these levels)."""


@dataclass(frozen=True, slots=True)
class NumericProfile:
    """Quantile bins and moments of a numeric sample.

    `fine_edges` are quantiles at `bins * FINE_BINS_PER_BIN` even levels plus TAIL_LEVELS
    at both ends; the PSI `edges` are quantiles at `bins` of those same levels, so they
    are a subset of the fine edges.
    """

    edges: tuple[float, ...]
    proportions: tuple[float, ...]
    mean: float
    std: float
    min: float
    max: float
    missing_rate: float
    fine_edges: tuple[float, ...] = ()
    fine_proportions: tuple[float, ...] = ()


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
    # One sort serves the quantiles, the distinct values and every bin count.
    ordered = np.sort(present)
    edges, fine = _quantile_edges(ordered, bins)
    counts = _sorted_bin_counts(ordered, edges)
    fine_counts = _sorted_bin_counts(ordered, fine)
    return NumericProfile(
        edges=tuple(edges.tolist()),
        proportions=tuple((counts / counts.sum()).tolist()),
        mean=float(present.mean()), std=float(present.std()),
        min=float(ordered[0]), max=float(ordered[-1]), missing_rate=missing_rate,
        fine_edges=tuple(fine.tolist()),
        fine_proportions=tuple((fine_counts / fine_counts.sum()).tolist()),
    )


def _sorted_bin_counts(ordered: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """`bin_counts` of an ascending sample whose values all lie within the edges."""
    cuts = np.searchsorted(ordered, edges[1:-1], side="left")
    return np.diff(np.concatenate(([0], cuts, [ordered.size]))).astype(np.float64)


def _sorted_quantiles(ordered: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """np.quantile's default (linear) method on an already sorted sample."""
    position = levels * (ordered.size - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, ordered.size - 1)
    weight = position - low
    quantiles: np.ndarray = ordered[low] + (ordered[high] - ordered[low]) * weight
    return quantiles


def _quantile_edges(ordered: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(PSI edges, fine edges) of an ascending sample, the PSI edges a subset of the fine.

    A feature with few distinct values (counts, flags, rounded amounts) gets one fine bin
    per value, edges halfway between values: quantile edges would merge the last two
    values (the last bin is closed) and hide a shift between them.
    """
    grid = np.linspace(0.0, 1.0, bins * FINE_BINS_PER_BIN + 1)
    starts = np.concatenate(([True], ordered[1:] != ordered[:-1]))
    if np.count_nonzero(starts) <= bins * FINE_BINS_PER_BIN:
        distinct = ordered[starts]
        fine = _distinct_edges(np.concatenate(
            ([distinct[0]], (distinct[:-1] + distinct[1:]) / 2.0, [distinct[-1]])))
        if distinct.size <= bins:
            return fine, fine
        return _distinct_edges(_snap(_sorted_quantiles(ordered, grid[::FINE_BINS_PER_BIN]),
                                     fine)), fine
    tails = np.asarray(TAIL_LEVELS)
    fine_levels = np.unique(np.concatenate((grid, tails, 1.0 - tails)))
    quantiles = _sorted_quantiles(ordered, fine_levels)
    # The PSI levels are members of the fine grid, so PSI edges are a subset of fine edges.
    edges = _distinct_edges(quantiles[np.searchsorted(fine_levels, grid[::FINE_BINS_PER_BIN])])
    return edges, _distinct_edges(quantiles)


def _snap(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    upper = np.clip(np.searchsorted(grid, values), 1, grid.size - 1)
    lower = upper - 1
    return np.where(values - grid[lower] <= grid[upper] - values, grid[lower], grid[upper])


def _distinct_edges(quantiles: np.ndarray) -> np.ndarray:
    edges = np.unique(quantiles)
    if edges.size == 1:
        edges = np.array([edges[0], edges[0]])
    return edges


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


def _proportions(weights: FloatVector) -> FloatVector:
    weights = np.asarray(weights, dtype=np.float64)
    total = weights.sum()
    return weights / total if total > 0 else np.zeros_like(weights)


def psi(expected: FloatVector, actual: FloatVector, *, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index Σ (a − e) · ln(a / e) over bins (counts or proportions).

    Both sides are normalised, then empty bins take `epsilon` (not renormalised), the
    usual convention that keeps the index finite.
    """
    e = np.maximum(_proportions(expected), epsilon)
    a = np.maximum(_proportions(actual), epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def js_distance(p: FloatVector, q: FloatVector) -> float:
    """Jensen–Shannon distance (square root of the divergence, base 2; within [0, 1])."""
    p, q = _proportions(p), _proportions(q)
    m = (p + q) / 2.0
    divergence = (_kl_bits(p, m) + _kl_bits(q, m)) / 2.0
    return float(math.sqrt(max(divergence, 0.0)))


def _kl_bits(p: FloatVector, m: FloatVector) -> float:
    used = p > 0
    return float(np.sum(p[used] * np.log2(p[used] / m[used])))


def chi_square_p(expected_counts: FloatVector, actual_counts: FloatVector) -> float:
    """p-value of the chi-square test of homogeneity of two count vectors (no continuity
    correction); 1.0 when there is nothing to compare."""
    table = np.vstack([np.asarray(expected_counts, dtype=np.float64),
                       np.asarray(actual_counts, dtype=np.float64)])
    table = table[:, table.sum(axis=0) > 0]
    rows = table.sum(axis=1)
    if table.shape[1] < 2 or (rows <= 0).any():
        return 1.0
    expected = np.outer(rows, table.sum(axis=0)) / table.sum()
    statistic = float(((table - expected) ** 2 / expected).sum())
    return float(stats.chi2.sf(statistic, table.shape[1] - 1))


def excess_rate_p(events: float, trials: float, expected_rate: float) -> float:
    """One-sided binomial p-value of seeing at least `events` in `trials` at a rate."""
    if events <= 0 or trials <= 0:
        return 1.0
    return float(stats.binom.sf(round(events) - 1, round(trials), min(expected_rate, 1.0)))


def calibration_error(counts: FloatVector, positives: FloatVector,
                      score_sums: FloatVector) -> tuple[float, float]:
    """Expected calibration error and its Hosmer–Lemeshow p-value over score bins.

    Args:
        counts: labelled decisions per score bin.
        positives: positive labels per bin.
        score_sums: sum of the predicted probabilities per bin.

    Returns:
        (ECE = Σ n_k/N · |ȳ_k − p̄_k|, p-value of the HL statistic with one degree of
        freedom per non-empty bin, as for an external validation sample).
    """
    n = np.asarray(counts, dtype=np.float64)
    y = np.asarray(positives, dtype=np.float64)
    s = np.asarray(score_sums, dtype=np.float64)
    used = n > 0
    if not used.any():
        return math.nan, 1.0
    n, y, s = n[used], y[used], s[used]
    ece = float(np.sum(np.abs(y - s)) / n.sum())
    variance = s * (1.0 - s / n)
    valid = variance > 0
    statistic = float(np.sum((y[valid] - s[valid]) ** 2 / variance[valid]))
    return ece, float(stats.chi2.sf(statistic, max(int(valid.sum()), 1)))


class BaselineCdf:
    """Share of a binned baseline below a value (uniform within a bin; 0 or 1 outside).

    Built once per model version: the trace drift block asks it for every feature of
    every trace read, and summing the bins below the value on each call was most of the
    block's cost. Plain Python on purpose: numpy's per-call overhead on a few dozen
    edges cost ten times the arithmetic.
    """

    __slots__ = ("_below", "_edges", "_proportions")

    def __init__(self, edges: Sequence[float], proportions: Sequence[float]) -> None:
        self._edges = list(edges)
        self._proportions = list(proportions)
        self._below = [math.fsum(self._proportions[:j]) for j in range(len(self._proportions))]

    def share_below(self, value: float) -> float:
        """Share of the baseline at or below `value`; NaN without bins or for NaN/inf."""
        edges = self._edges
        if len(edges) < 2 or not math.isfinite(value):
            return math.nan
        if value <= edges[0]:
            return 0.0
        if value >= edges[-1]:
            return 1.0
        j = bisect.bisect_right(edges, value) - 1
        width = edges[j + 1] - edges[j]
        within = (value - edges[j]) / width if width > 0 else 1.0
        return float(self._below[j] + self._proportions[j] * within)
