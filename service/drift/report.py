"""Turn a window's counters and a reference into the drift answer (docs/drift.md)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from explainers.drift_binned import BinnedDistribution, wasserstein_binned
from explainers.drift_rules import (
    DRIFT,
    WARN,
    DriftThresholds,
    Evidence,
    is_stale,
    judge,
    judge_labels,
)
from explainers.drift_stats import (
    calibration_error,
    chi_square_p,
    excess_rate_p,
    js_distance,
    psi,
)
from service.drift.layout import CategoricalColumn, NumericColumn, WindowLayout
from service.drift.references import (
    Counted,
    Reference,
    window_categorical,
    window_numeric,
)
from service.drift.windows import WindowSpan
from service.trace_builder import iso_ms
from storage.manifest import NumericBaseline

CALIBRATION_BINS = 10


@dataclass(frozen=True, slots=True)
class ReportContext:
    """Everything a report needs besides the counters."""

    layout: WindowLayout
    reference: Reference
    thresholds: DriftThresholds
    span: WindowSpan
    masked: frozenset[str]


def _num(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _iso(epoch_ms: float | None) -> str | None:
    return None if epoch_ms is None else iso_ms(int(epoch_ms))


def build_report(ctx: ReportContext, counts: dict[str, float]) -> dict[str, Any]:
    """Per-feature, prediction and label drift of one window against the reference."""
    n = counts.get("n", 0.0)
    features: dict[str, dict[str, Any]] = {}
    for column in ctx.layout.numeric:
        features[column.name] = _numeric_entry(ctx, column, counts)
    for cat in ctx.layout.categorical:
        features[cat.name] = _categorical_entry(ctx, cat, counts)
    ordered = {f.name: features[f.name] for f in ctx.layout.manifest.features
               if f.name in features}
    return {
        "window": {"start": iso_ms(ctx.span.start_ms), "end": iso_ms(ctx.span.end_ms)},
        "baseline": ctx.reference.name,
        "count": int(n),
        "last_record_at": _iso(counts.get("t")),
        "drifting": [name for name, e in ordered.items() if e["status"] == DRIFT],
        "warning": [name for name, e in ordered.items() if e["status"] == WARN],
        "features": ordered,
        "prediction": _prediction_entry(ctx, counts),
        "labels": _labels_entry(ctx, counts),
        "thresholds": asdict(ctx.thresholds),
    }


def _shift(reference: np.ndarray, current: np.ndarray) -> tuple[float | None, float | None,
                                                                 float]:
    if reference.sum() <= 0 or current.sum() <= 0:
        return None, None, 1.0
    return (psi(reference, current), js_distance(reference, current),
            chi_square_p(reference, current))


def _missing(counted: Counted, missing: float, n: float) -> tuple[float | None, float | None,
                                                                  float]:
    rate = missing / n if n else None
    base_rate = counted.missing / counted.total if counted.total else None
    if rate is None or base_rate is None:
        return rate, base_rate, 1.0
    p = chi_square_p(np.array([counted.missing, counted.total - counted.missing]),
                     np.array([missing, n - missing]))
    return rate, base_rate, p


def _numeric_entry(ctx: ReportContext, column: NumericColumn,
                   counts: dict[str, float]) -> dict[str, Any]:
    n = counts.get("n", 0.0)
    current = window_numeric(column, counts)
    missing = counts.get(f"{column.field}:m", 0.0)
    present = current.total
    reference = ctx.reference.numeric(column)
    profile = ctx.layout.manifest.baseline.features.get(column.name)
    assert isinstance(profile, NumericBaseline)
    if reference is None:
        reference = Counted(BinnedDistribution(column.edges, np.zeros(column.n_bins)), 0.0, 0.0)
    base = reference.present
    assert isinstance(base, BinnedDistribution)
    psi_v, js_v, shift_p = _shift(base.psi_counts(column.groups),
                                  current.psi_counts(column.groups))
    w = wasserstein_binned(base, current) if base.total and present else math.nan
    w_norm = w / profile.std if profile.std > 0 else math.nan
    rate, base_rate, missing_p = _missing(reference, missing, n)
    outside = current.below + current.above
    oor_rate = outside / present if present else None
    oor_p = excess_rate_p(outside, present, 2.0 / (ctx.layout.manifest.baseline.rows + 1))
    last_seen = counts.get(f"{column.field}:t")
    evidence = Evidence(
        count=int(n), present=int(present), baseline_count=base.total, psi=psi_v,
        wasserstein_norm=_num(w_norm), shift_p=shift_p,
        missing_change=None if rate is None or base_rate is None else rate - base_rate,
        missing_p=missing_p, out_of_range_rate=oor_rate, out_of_range_p=oor_p,
        stale=_stale(ctx, counts, last_seen, 1.0 - profile.missing_rate))
    entry = _entry(ctx, "numeric", evidence, js_v, shift_p, rate, base_rate, last_seen)
    entry["wasserstein_norm"] = _num(w_norm)
    if column.name in ctx.masked:
        return _withhold(ctx, entry, present)
    mean = column.center + counts.get(f"{column.field}:sum", 0.0) / present if present else None
    square = counts.get(f"{column.field}:sq", 0.0) / present if present else None
    shift = (mean - column.center) if mean is not None else None
    std = math.sqrt(max(square - shift ** 2, 0.0)) if square is not None and shift is not None \
        else None
    entry.update(mean=_num(mean), baseline_mean=profile.mean, std=_num(std),
                 baseline_std=profile.std)
    return entry


def _categorical_entry(ctx: ReportContext, column: CategoricalColumn,
                       counts: dict[str, float]) -> dict[str, Any]:
    n = counts.get("n", 0.0)
    current = window_categorical(column, counts)
    missing = counts.get(f"{column.field}:m", 0.0)
    present = float(current.sum())
    reference = ctx.reference.categorical(column) or Counted(np.zeros(column.n_bins), 0.0, 0.0)
    base = np.asarray(reference.present, dtype=np.float64)
    psi_v, js_v, shift_p = _shift(base, current)
    rate, base_rate, missing_p = _missing(reference, missing, n)
    new = float(current[-1])
    oor_rate = new / present if present else None
    oor_p = excess_rate_p(new, present, 1.0 / (ctx.layout.manifest.baseline.rows + 1))
    last_seen = counts.get(f"{column.field}:t")
    profile = ctx.layout.manifest.baseline.features.get(column.name)
    present_rate = 1.0 - (profile.missing_rate if profile is not None else 0.0)
    evidence = Evidence(
        count=int(n), present=int(present), baseline_count=float(base.sum()), psi=psi_v,
        shift_p=shift_p,
        missing_change=None if rate is None or base_rate is None else rate - base_rate,
        missing_p=missing_p, out_of_range_rate=oor_rate, out_of_range_p=oor_p,
        stale=_stale(ctx, counts, last_seen, present_rate))
    entry = _entry(ctx, "categorical", evidence, js_v, shift_p, rate, base_rate, last_seen)
    if column.name in ctx.masked:
        return _withhold(ctx, entry, present)
    return entry


def _stale(ctx: ReportContext, counts: dict[str, float], last_seen: float | None,
           present_rate: float) -> bool:
    last_record = counts.get("t")
    if last_record is None:
        return False
    since = last_seen if last_seen is not None else float(ctx.span.start_ms)
    return is_stale(count=int(counts.get("n", 0.0)), gap_s=(last_record - since) / 1000.0,
                    span_s=ctx.span.seconds, present_rate=present_rate,
                    thresholds=ctx.thresholds)


def _entry(ctx: ReportContext, kind: str, evidence: Evidence, js_v: float | None,
           shift_p: float, rate: float | None, base_rate: float | None,
           last_seen: float | None) -> dict[str, Any]:
    verdict = judge(evidence, ctx.thresholds)
    return {
        "kind": kind, "status": verdict.status, "reasons": list(verdict.reasons),
        "count": evidence.count, "present": evidence.present,
        "psi": _num(evidence.psi), "js": _num(js_v), "chi2_p_value": _num(shift_p),
        "missing_rate": _num(rate), "baseline_missing_rate": _num(base_rate),
        "missing_rate_change": _num(evidence.missing_change),
        "out_of_range_rate": _num(evidence.out_of_range_rate),
        "last_seen": _iso(last_seen),
    }


def _withhold(ctx: ReportContext, entry: dict[str, Any], present: float) -> dict[str, Any]:
    """A masked feature's statistics over few values could narrow its raw values down."""
    if present < ctx.thresholds.min_count:
        for name in ("psi", "js", "chi2_p_value", "wasserstein_norm", "out_of_range_rate"):
            if name in entry:
                entry[name] = None
    entry["masked"] = True
    return entry


def _prediction_entry(ctx: ReportContext, counts: dict[str, float]) -> dict[str, Any]:
    column = ctx.layout.score
    current = window_numeric(column, counts)
    reference = ctx.reference.score(column)
    base = reference.present
    assert isinstance(base, BinnedDistribution)
    scored = current.total
    psi_v, js_v, shift_p = _shift(base.psi_counts(column.groups),
                                  current.psi_counts(column.groups))
    std = ctx.layout.manifest.baseline.score.std or _binned_std(base)
    w = wasserstein_binned(base, current) if base.total and scored else math.nan
    w_norm = w / std if std and std > 0 else math.nan
    evidence = Evidence(count=int(scored), present=int(scored), baseline_count=base.total,
                        psi=psi_v, wasserstein_norm=_num(w_norm), shift_p=shift_p)
    verdict = judge(evidence, ctx.thresholds)
    mean = column.center + counts.get("s:sum", 0.0) / scored if scored else None
    return {"status": verdict.status, "reasons": list(verdict.reasons), "count": int(scored),
            "psi": _num(psi_v), "js": _num(js_v), "wasserstein_norm": _num(w_norm),
            "chi2_p_value": _num(shift_p), "mean": _num(mean),
            "baseline_mean": ctx.layout.manifest.baseline.score.mean}


def _binned_std(dist: BinnedDistribution) -> float:
    mids = (dist.edges[:-1] + dist.edges[1:]) / 2.0
    if dist.masses.sum() <= 0:
        return math.nan
    mean = float(np.average(mids, weights=dist.masses))
    return float(np.sqrt(np.average((mids - mean) ** 2, weights=dist.masses)))


def _labels_entry(ctx: ReportContext, counts: dict[str, float]) -> dict[str, Any]:
    labelled = counts.get("l:n", 0.0)
    positives = counts.get("l:pos", 0.0)
    rate = positives / labelled if labelled else None
    reference = ctx.reference.labels()
    base_rate = reference[0] / reference[1] if reference and reference[1] else None
    change = rate - base_rate if rate is not None and base_rate is not None else None
    rate_p = 1.0
    if reference is not None and labelled:
        rate_p = chi_square_p(np.array([reference[0], reference[1] - reference[0]]),
                              np.array([positives, labelled - positives]))
    bins = range(CALIBRATION_BINS)
    scored = np.array([counts.get(f"l:c{k}:n", 0.0) for k in bins])
    ece, ece_p = calibration_error(scored, np.array([counts.get(f"l:c{k}:y", 0.0) for k in bins]),
                                   np.array([counts.get(f"l:c{k}:p", 0.0) for k in bins]))
    if scored.sum() < ctx.thresholds.min_labels:
        # Too few labelled scores: the ECE would mostly measure sampling noise.
        ece, ece_p = math.nan, 1.0
    verdict = judge_labels(int(labelled), rate_change=change, rate_p=rate_p, ece=_num(ece),
                           ece_p=ece_p, thresholds=ctx.thresholds)
    return {"status": verdict.status, "reasons": list(verdict.reasons), "count": int(labelled),
            "positive_rate": _num(rate), "baseline_positive_rate": _num(base_rate),
            "positive_rate_change": _num(change), "positive_rate_p_value": _num(rate_p),
            "ece": _num(ece), "calibration_p_value": _num(ece_p),
            "calibration_count": int(scored.sum()),
            "last_label_at": _iso(counts.get("l:t"))}
