"""Readable candidate values: the roundest number inside a threshold interval.

A tree model gives the same output for every value of a feature between two of its
split thresholds, so a counterfactual may pick any of them: we take the one closest to
the query's side, rounded to the coarsest decimal step (at most `tolerance` away from
the boundary; whole numbers at least for whole-number features), else the exact
boundary (the next whole number for whole-number features).
Models that compare float32 inputs (scikit-learn trees) are checked in float32.
"""

from __future__ import annotations

import numpy as np

from explainers.types import FloatVector

# Finest decimal step tried before falling back to the exact boundary value.
_FINEST_EXPONENT = -12


def model_value(values: np.ndarray, *, float32: bool) -> np.ndarray:
    """The value the model compares with its thresholds."""
    return values.astype(np.float32).astype(np.float64) if float32 else values


def values_above(low: FloatVector, high: FloatVector, *, tolerance: float, integer: bool,
                 float32: bool) -> FloatVector:
    """Per interval (low, high]: a round value just above `low` (NaN: none inside)."""
    result = np.full(low.shape, np.nan)
    for step, digits in _steps(tolerance, integer):
        with np.errstate(invalid="ignore", over="ignore"):
            candidate = np.round((np.floor(low / step) + 1.0) * step, digits)
        _accept(result, candidate, low, np.minimum(high, low + tolerance), float32)
    exact = np.floor(low) + 1.0 if integer else _exact_above(low, float32)
    _accept(result, exact, low, high, float32)
    return result


def values_at_most(low: FloatVector, high: FloatVector, *, tolerance: float, integer: bool,
                   float32: bool) -> FloatVector:
    """Per interval (low, high]: a round value at or just below `high` (NaN: none)."""
    result = np.full(high.shape, np.nan)
    for step, digits in _steps(tolerance, integer):
        with np.errstate(invalid="ignore", over="ignore"):
            candidate = np.round(np.floor(high / step) * step, digits)
        _accept(result, candidate, np.maximum(low, high - tolerance), high, float32)
    exact = np.floor(high) if integer else _exact_at_most(high, float32)
    _accept(result, exact, low, high, float32)
    return result


def _steps(tolerance: float, integer: bool) -> list[tuple[float, int]]:
    """Decimal steps from the coarsest within tolerance down to the finest tried."""
    if not np.isfinite(tolerance) or tolerance <= 0:
        return []
    top = int(np.floor(np.log10(tolerance)))
    finest = 0 if integer else _FINEST_EXPONENT
    return [(10.0 ** e, max(-e, 0)) for e in range(top, finest - 1, -1)]


def _accept(result: FloatVector, candidate: FloatVector, low: FloatVector, high: FloatVector,
            float32: bool) -> None:
    """Fill still-empty entries whose candidate lies inside (low, high] as the model sees it."""
    seen = model_value(candidate, float32=float32)
    with np.errstate(invalid="ignore"):
        inside = np.isnan(result) & np.isfinite(candidate) & (seen > low) & (seen <= high)
    result[inside] = candidate[inside]


def _exact_above(low: FloatVector, float32: bool) -> FloatVector:
    if not float32:
        return np.nextafter(low, np.inf)
    single = low.astype(np.float32)
    bumped = np.where(single.astype(np.float64) > low, single,
                      np.nextafter(single, np.float32(np.inf)))
    return bumped.astype(np.float64)


def _exact_at_most(high: FloatVector, float32: bool) -> FloatVector:
    if not float32:
        return high.copy()
    single = high.astype(np.float32)
    lowered = np.where(single.astype(np.float64) <= high, single,
                       np.nextafter(single, np.float32(-np.inf)))
    return lowered.astype(np.float64)


def round_to_scale(values: FloatVector, scales: FloatVector, *, integer: np.ndarray
                   ) -> FloatVector:
    """Round values to about a hundredth of their feature's scale (whole numbers stay whole)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        exponent = np.floor(np.log10(np.where(scales > 0, scales, 1.0) / 100.0))
    step = 10.0 ** exponent
    rounded = np.round(values / step) * step
    return np.where(integer, np.round(values), rounded)
