"""Statuses on synthetic shifts, through the real layout, counters and report."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from scipy import stats

from explainers.drift_rules import (
    DRIFT,
    INSUFFICIENT_DATA,
    OK,
    WARN,
    DriftThresholds,
    Evidence,
    is_stale,
    judge,
    judge_labels,
)
from explainers.drift_stats import profile_categorical, profile_numeric
from service.drift.layout import WindowLayout
from service.drift.references import TrainingReference
from service.drift.report import ReportContext, build_report
from service.drift.windows import WindowSpan, plan_buckets, trailing_span
from storage.drift.records import BucketRef, WindowIncrement, is_maximum
from storage.manifest import (
    Baseline,
    CategoricalBaseline,
    FeatureManifest,
    Manifest,
    NumericBaseline,
    ScoreBaseline,
)

TRAIN_ROWS = 20_000
HOUR_MS = 3_600_000
START_MS = 1_800_000_000_000 // HOUR_MS * HOUR_MS
CATEGORIES = ["a", "b", "c", "d"]
CATEGORY_P = [0.5, 0.3, 0.15, 0.05]


def _numeric(values: np.ndarray) -> NumericBaseline:
    p = profile_numeric(values)
    return NumericBaseline(edges=list(p.edges), proportions=list(p.proportions), mean=p.mean,
                           std=p.std, min=p.min, max=p.max, missing_rate=p.missing_rate,
                           fine_edges=list(p.fine_edges),
                           fine_proportions=list(p.fine_proportions))


@pytest.fixture(scope="module")
def layout() -> WindowLayout:
    rng = np.random.default_rng(0)
    x = rng.normal(10.0, 2.0, TRAIN_ROWS)
    y = rng.gamma(2.0, 1.5, TRAIN_ROWS)
    c = profile_categorical(list(rng.choice(CATEGORIES, TRAIN_ROWS, p=CATEGORY_P)))
    scores = rng.beta(2, 5, TRAIN_ROWS)
    edges = list(np.linspace(0, 1, 11))
    fine = list(np.linspace(0, 1, 101))
    manifest = Manifest(
        name="synthetic", version="1", flavor="lightgbm", task="binary",
        created_at="2026-01-01T00:00:00Z", training_data_snapshot="synthetic",
        classes=[0, 1],
        features=[FeatureManifest(name="x"), FeatureManifest(name="y"),
                  FeatureManifest(name="c", type="categorical", categories=CATEGORIES)],
        baseline=Baseline(
            rows=TRAIN_ROWS,
            features={"x": _numeric(x), "y": _numeric(y),
                      "c": CategoricalBaseline(frequencies=c.frequencies, other=c.other,
                                               missing_rate=c.missing_rate)},
            score=ScoreBaseline(
                edges=edges, proportions=list(np.histogram(scores, edges)[0] / TRAIN_ROWS),
                fine_edges=fine,
                fine_proportions=list(np.histogram(scores, fine)[0] / TRAIN_ROWS),
                mean=float(scores.mean()), std=float(scores.std()))),
        files={})
    return WindowLayout(manifest)


Generator = Callable[[np.random.Generator, int], dict[str, np.ndarray]]


def _live(rng: np.random.Generator, n: int) -> dict[str, Any]:
    return {"x": rng.normal(10.0, 2.0, n), "y": rng.gamma(2.0, 1.5, n),
            "c": rng.choice(CATEGORIES, n, p=CATEGORY_P).astype(object),
            "score": rng.beta(2, 5, n)}


def _merge(increments: list[WindowIncrement]) -> dict[str, float]:
    """The store's merge rule: sums, except last-seen maxima."""
    merged: dict[str, float] = {}
    for inc in increments:
        if inc.key.segment or inc.bucket.resolution_s != 300:
            continue
        for mapping in (inc.counts, inc.sums):
            for name, value in mapping.items():
                merged[name] = merged.get(name, 0.0) + value
        for name, value in inc.maxima.items():
            assert is_maximum(name)
            merged[name] = max(merged.get(name, value), value)
    return merged


def _report(layout: WindowLayout, columns: dict[str, Any], *,
            events: np.ndarray | None = None) -> dict[str, Any]:
    n = len(columns["x"])
    if events is None:
        events = START_MS + np.linspace(0, HOUR_MS - 1, n).astype(np.int64)
    rows = [{"x": None if np.isnan(columns["x"][i]) else float(columns["x"][i]),
             "y": None if np.isnan(columns["y"][i]) else float(columns["y"][i]),
             "c": columns["c"][i]} for i in range(n)]
    increments = layout.tally(rows, [float(s) for s in columns["score"]], events, [],
                              resolutions=[300])
    context = ReportContext(layout, TrainingReference(layout), DriftThresholds(),
                            WindowSpan(START_MS, START_MS + HOUR_MS), frozenset())
    return build_report(context, _merge(increments))


def _statuses(report: dict[str, Any]) -> dict[str, str]:
    return {name: entry["status"] for name, entry in report["features"].items()}


def test_no_shift_is_ok_everywhere(layout: WindowLayout) -> None:
    report = _report(layout, _live(np.random.default_rng(1), 2000))
    assert _statuses(report) == {"x": OK, "y": OK, "c": OK}
    assert report["prediction"]["status"] == OK


def test_mean_shift_is_drift_through_wasserstein(layout: WindowLayout) -> None:
    live = _live(np.random.default_rng(2), 2000)
    live["x"] = live["x"] + 0.5 * 2.0
    report = _report(layout, live)
    assert _statuses(report) == {"x": DRIFT, "y": OK, "c": OK}
    assert "wasserstein_norm" in report["features"]["x"]["reasons"]
    train_x = np.random.default_rng(0).normal(10.0, 2.0, TRAIN_ROWS)
    direct = stats.wasserstein_distance(train_x, live["x"]) / train_x.std()
    assert report["features"]["x"]["wasserstein_norm"] == pytest.approx(direct, rel=0.05)


def test_variance_change_is_drift(layout: WindowLayout) -> None:
    live = _live(np.random.default_rng(3), 2000)
    live["x"] = 10.0 + (live["x"] - 10.0) * 1.8
    report = _report(layout, live)
    assert report["features"]["x"]["status"] == DRIFT
    assert report["features"]["x"]["std"] == pytest.approx(live["x"].std(), rel=1e-6)
    assert report["features"]["x"]["out_of_range_rate"] > 0


def test_new_category_is_drift_with_out_of_range(layout: WindowLayout) -> None:
    live = _live(np.random.default_rng(4), 2000)
    live["c"][:300] = "never-seen"
    report = _report(layout, live)
    entry = report["features"]["c"]
    assert entry["status"] == DRIFT
    assert "out_of_range" in entry["reasons"] and "psi" in entry["reasons"]
    assert entry["out_of_range_rate"] == pytest.approx(0.15)


def test_missing_rate_jump_is_drift(layout: WindowLayout) -> None:
    live = _live(np.random.default_rng(5), 2000)
    live["y"][::4] = np.nan
    report = _report(layout, live)
    entry = report["features"]["y"]
    assert entry["status"] == DRIFT and entry["reasons"] == ["missing_rate"]
    assert entry["missing_rate"] == pytest.approx(0.25)
    assert report["features"]["x"]["status"] == OK


def test_stale_feature_is_drift(layout: WindowLayout) -> None:
    live = _live(np.random.default_rng(6), 1200)
    live["x"][900:] = np.nan  # the last quarter of the hour never has x
    report = _report(layout, live)
    entry = report["features"]["x"]
    assert entry["status"] == DRIFT
    assert "stale" in entry["reasons"]
    assert report["features"]["y"]["status"] == OK


def test_few_records_are_insufficient_data(layout: WindowLayout) -> None:
    live = _live(np.random.default_rng(7), 60)
    live["x"] = live["x"] + 4.0
    report = _report(layout, live)
    assert set(_statuses(report).values()) == {INSUFFICIENT_DATA}


def test_tiny_shift_at_large_n_is_not_flagged(layout: WindowLayout) -> None:
    # Significant at this n (p ≪ 0.01), yet far below any effect threshold.
    live = _live(np.random.default_rng(8), 100_000)
    live["x"] = live["x"] + 0.03 * 2.0
    entry = _report(layout, live)["features"]["x"]
    assert entry["chi2_p_value"] < 0.01
    assert entry["status"] == OK


def test_status_rule_needs_effect_significance_and_sample_size() -> None:
    t = DriftThresholds()
    big = Evidence(count=5000, present=5000, baseline_count=20_000, psi=0.3,
                   wasserstein_norm=0.25, shift_p=1e-9)
    assert judge(big, t).status == DRIFT
    assert judge(Evidence(**{**_fields(big), "shift_p": 0.2}), t).status == OK
    assert judge(Evidence(**{**_fields(big), "psi": 0.12, "wasserstein_norm": 0.02}),
                 t).status == WARN
    assert judge(Evidence(**{**_fields(big), "count": 50, "present": 50}),
                 t).status == INSUFFICIENT_DATA
    assert judge(Evidence(**{**_fields(big), "baseline_count": 10}),
                 t).reasons == ("baseline_sample_size",)
    stricter = DriftThresholds(wasserstein_drift=0.5, psi_drift=0.5)
    assert judge(big, stricter).status == WARN


def _fields(evidence: Evidence) -> dict[str, Any]:
    return {name: getattr(evidence, name) for name in Evidence.__slots__}


def test_stale_needs_enough_expected_values() -> None:
    t = DriftThresholds()
    assert is_stale(count=1200, gap_s=1800, span_s=3600, present_rate=1.0, thresholds=t)
    assert not is_stale(count=1200, gap_s=600, span_s=3600, present_rate=1.0, thresholds=t)
    assert not is_stale(count=30, gap_s=1800, span_s=3600, present_rate=0.5, thresholds=t)


def test_windows_are_whole_buckets_and_use_rollups_inside() -> None:
    span = trailing_span(START_MS + 7 * HOUR_MS + 61_000, 3 * 3600, 300)
    assert span.end_ms == START_MS + 7 * HOUR_MS + 300_000
    assert span.seconds == 3 * 3600
    buckets = plan_buckets(span, 300, 3600)
    covered = sorted((b.start_ms, b.start_ms + b.resolution_s * 1000) for b in buckets)
    assert covered[0][0] == span.start_ms and covered[-1][1] == span.end_ms
    assert all(a[1] == b[0] for a, b in itertools.pairwise(covered))
    assert sum(b.resolution_s == 3600 for b in buckets) == 2
    assert BucketRef(300, span.start_ms) in buckets


def test_label_status_needs_labels_effect_and_significance() -> None:
    t = DriftThresholds()
    assert judge_labels(40, rate_change=0.3, rate_p=1e-9, ece=0.3, ece_p=1e-9,
                        thresholds=t).status == INSUFFICIENT_DATA
    shifted = judge_labels(500, rate_change=0.12, rate_p=1e-6, ece=0.02, ece_p=0.5,
                           thresholds=t)
    assert (shifted.status, shifted.reasons) == (DRIFT, ("label_rate",))
    miscalibrated = judge_labels(500, rate_change=0.0, rate_p=0.9, ece=0.07, ece_p=1e-4,
                                 thresholds=t)
    assert (miscalibrated.status, miscalibrated.reasons) == (WARN, ("calibration",))
    noisy = judge_labels(500, rate_change=0.08, rate_p=0.2, ece=0.2, ece_p=0.3, thresholds=t)
    assert noisy.status == OK
