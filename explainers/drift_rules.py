"""The drift status rule: an effect size, a significance test and a sample size, combined.

Why all three (docs/drift.md has the measurements): at 100,000 rows per side a test's
p-value is tiny for shifts nobody cares about, so p-values alone flag everything; at 100
rows sampling noise alone gives PSI ≈ 0.09 and a normalised Wasserstein ≈ 0.1, so effect
sizes alone flag noise. A signal counts only when its effect size reaches a threshold AND
the difference is significant at `alpha` AND the window has `min_count` values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

OK = "ok"
WARN = "warn"
DRIFT = "drift"
INSUFFICIENT_DATA = "insufficient_data"

STATUS_LEVEL = {INSUFFICIENT_DATA: -1, OK: 0, WARN: 1, DRIFT: 2}
"""Numeric form of a status (Prometheus gauges, sorting)."""

STALE_EXPECTED_VALUES = 10.0
"""A feature is stale when at least this many present values were expected since it was
last seen (Poisson: P(none | 10 expected) ≈ 5e-5), so rare features are not called stale."""

_LEVEL_STATUS = {0: OK, 1: WARN, 2: DRIFT}


@dataclass(frozen=True, slots=True)
class DriftThresholds:
    """Thresholds of the status rule; every model may override any of them."""

    psi_warn: float = 0.1
    psi_drift: float = 0.25
    wasserstein_warn: float = 0.1
    """Wasserstein-1 divided by the training standard deviation."""
    wasserstein_drift: float = 0.2
    missing_warn: float = 0.05
    """Absolute change of the missing rate."""
    missing_drift: float = 0.10
    out_of_range_warn: float = 0.01
    """Share of present values outside the training range (numeric) or never seen in
    training (categorical)."""
    out_of_range_drift: float = 0.05
    label_rate_warn: float = 0.05
    """Absolute change of the positive-label rate."""
    label_rate_drift: float = 0.10
    ece_warn: float = 0.05
    ece_drift: float = 0.10
    alpha: float = 0.01
    """Significance level every effect must also pass."""
    min_count: int = 100
    """Fewer values than this in the window (or the baseline) → insufficient_data."""
    min_labels: int = 100
    """Fewer labels than this in the window → label status insufficient_data."""
    stale_after_s: float = 900.0
    """A feature not seen (non-missing) for this long while records arrive is stale."""


@dataclass(frozen=True, slots=True)
class Evidence:
    """What one window says about one variable against its baseline."""

    count: int
    """Records in the window."""
    present: int
    """Non-missing values in the window."""
    baseline_count: float
    """Non-missing values behind the baseline (training rows or the baseline window)."""
    psi: float | None = None
    wasserstein_norm: float | None = None
    shift_p: float = 1.0
    """Chi-square p-value of the binned distributions (the significance of psi/wasserstein)."""
    missing_change: float | None = None
    missing_p: float = 1.0
    out_of_range_rate: float | None = None
    out_of_range_p: float = 1.0
    stale: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    """A status and the signals that set it (empty for ok)."""

    status: str
    reasons: tuple[str, ...] = ()


def _level(value: float | None, warn: float, drift: float) -> int:
    if value is None or not math.isfinite(value):
        return 0
    magnitude = abs(value)
    return 2 if magnitude >= drift else 1 if magnitude >= warn else 0


def _verdict(levels: dict[str, int], *, judged: bool) -> Verdict:
    top = max(levels.values(), default=0)
    if top == 0:
        return Verdict(OK) if judged else Verdict(INSUFFICIENT_DATA, ("sample_size",))
    return Verdict(_LEVEL_STATUS[top], tuple(name for name, lv in levels.items() if lv > 0))


def judge(evidence: Evidence, thresholds: DriftThresholds) -> Verdict:
    """Return the status of one feature (or of the prediction) in a window.

    insufficient_data when the window or the baseline has fewer than `min_count`
    records; otherwise the highest level reached by any signal, where a signal reaches
    warn/drift only when its effect passes the threshold and its test passes `alpha`:
    distribution (psi, wasserstein_norm; chi-square on the bins), missing_rate (change;
    chi-square 2×2), out_of_range (rate; one-sided binomial), and stale (drift).
    """
    t = thresholds
    if evidence.count < t.min_count:
        return Verdict(INSUFFICIENT_DATA, ("sample_size",))
    if evidence.baseline_count < t.min_count:
        return Verdict(INSUFFICIENT_DATA, ("baseline_sample_size",))
    levels: dict[str, int] = {}
    if evidence.present >= t.min_count and evidence.shift_p < t.alpha:
        levels["psi"] = _level(evidence.psi, t.psi_warn, t.psi_drift)
        levels["wasserstein_norm"] = _level(evidence.wasserstein_norm, t.wasserstein_warn,
                                            t.wasserstein_drift)
    if evidence.missing_p < t.alpha:
        levels["missing_rate"] = _level(evidence.missing_change, t.missing_warn,
                                        t.missing_drift)
    if evidence.present >= t.min_count and evidence.out_of_range_p < t.alpha:
        levels["out_of_range"] = _level(evidence.out_of_range_rate, t.out_of_range_warn,
                                        t.out_of_range_drift)
    if evidence.stale:
        levels["stale"] = 2
    return _verdict(levels, judged=evidence.present >= t.min_count)


def judge_labels(count: int, *, rate_change: float | None, rate_p: float,
                 ece: float | None, ece_p: float, thresholds: DriftThresholds) -> Verdict:
    """Return the status of a window's labels: positive-rate change and calibration."""
    t = thresholds
    if count < t.min_labels:
        return Verdict(INSUFFICIENT_DATA, ("label_count",))
    levels: dict[str, int] = {}
    if rate_p < t.alpha:
        levels["label_rate"] = _level(rate_change, t.label_rate_warn, t.label_rate_drift)
    if ece_p < t.alpha:
        levels["calibration"] = _level(ece, t.ece_warn, t.ece_drift)
    return _verdict(levels, judged=True)


def is_stale(*, count: int, gap_s: float, span_s: float, present_rate: float,
             thresholds: DriftThresholds) -> bool:
    """Tell whether a feature stopped arriving while its model kept receiving records.

    Args:
        count: records in the window.
        gap_s: time from the feature's last non-missing value (or the window start) to
            the model's last record.
        span_s: length of the window.
        present_rate: share of non-missing values in the baseline.
    """
    if count <= 0 or span_s <= 0 or present_rate <= 0 or gap_s <= thresholds.stale_after_s:
        return False
    expected = count * min(1.0, gap_s / span_s) * present_rate
    return expected >= STALE_EXPECTED_VALUES
