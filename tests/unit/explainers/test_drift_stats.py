"""Drift statistics against independent computations (numpy/scipy on the raw samples)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from explainers.drift_binned import (
    BinnedDistribution,
    bin_distribution,
    rebin,
    wasserstein_binned,
)
from explainers.drift_stats import (
    PSI_EPSILON,
    BaselineCdf,
    calibration_error,
    chi_square_p,
    excess_rate_p,
    js_distance,
    profile_numeric,
    psi,
)

RNG_SEED = 7


def _direct_psi(reference: np.ndarray, current: np.ndarray, edges: np.ndarray) -> float:
    """Textbook PSI with open outer bins, via np.histogram on the raw samples."""
    open_edges = np.concatenate(([-np.inf], edges[1:-1], [np.inf]))
    e = np.histogram(reference, open_edges)[0] / reference.size
    a = np.histogram(current, open_edges)[0] / current.size
    e, a = np.where(e == 0, PSI_EPSILON, e), np.where(a == 0, PSI_EPSILON, a)
    return float(np.sum((a - e) * np.log(a / e)))


def _samples() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(RNG_SEED)
    n = 50_000
    return {
        "same": (rng.normal(0, 1, n), rng.normal(0, 1, n)),
        "mean_shift": (rng.normal(0, 1, n), rng.normal(0.3, 1, n)),
        "variance": (rng.normal(5, 2, n), rng.normal(5, 3, n)),
        "lognormal": (rng.lognormal(0, 1, n), rng.lognormal(0.3, 1.2, n)),
        "out_of_range": (rng.uniform(0, 1, n), rng.uniform(0.5, 1.5, n)),
        "discrete": (rng.poisson(3, n).astype(float), rng.poisson(3.6, n).astype(float)),
        "small_current": (rng.normal(0, 1, n), rng.normal(0.2, 1, 300)),
    }


@pytest.mark.parametrize("case", list(_samples()))
def test_psi_on_profile_bins_equals_direct_computation(case: str) -> None:
    reference, current = _samples()[case]
    profile = profile_numeric(reference)
    edges = np.asarray(profile.edges)
    window = bin_distribution(current, np.asarray(profile.fine_edges))
    groups = np.clip(np.searchsorted(edges[1:-1], (window.edges[:-1] + window.edges[1:]) / 2,
                                     side="right"), 0, edges.size - 2)
    ours = psi(np.asarray(profile.proportions), window.psi_counts(groups))
    assert ours == pytest.approx(_direct_psi(reference, current, edges), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("case", list(_samples()))
def test_binned_wasserstein_matches_scipy_on_raw_samples(case: str) -> None:
    reference, current = _samples()[case]
    profile = profile_numeric(reference)
    fine = np.asarray(profile.fine_edges)
    ours = wasserstein_binned(
        BinnedDistribution(fine, np.asarray(profile.fine_proportions) * reference.size),
        bin_distribution(current, fine))
    direct = stats.wasserstein_distance(reference, current)
    # Within-bin uniformity is the only approximation; 117 quantile bins keep it small.
    assert ours / reference.std() == pytest.approx(direct / reference.std(), rel=0.06,
                                                   abs=0.005)


def test_wasserstein_of_tails_is_exact() -> None:
    edges = np.array([0.0, 1.0])
    inside = BinnedDistribution(edges, np.array([10.0]))
    outside = BinnedDistribution(edges, np.array([0.0]), above=10.0, above_distance=2.0)
    rng = np.random.default_rng(1)
    raw_inside = rng.uniform(0, 1, 200_000)
    assert wasserstein_binned(inside, outside) == pytest.approx(
        stats.wasserstein_distance(raw_inside, np.full(10, 3.0)), rel=1e-2)
    assert wasserstein_binned(inside, inside) == 0.0
    assert np.isnan(wasserstein_binned(inside, BinnedDistribution(edges, np.array([0.0]))))


def test_js_distance_equals_scipy() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        p, q = rng.random(12), rng.random(12)
        q[rng.integers(0, 12)] = 0.0
        assert js_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2), abs=1e-12)
    assert js_distance(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)


def test_chi_square_p_equals_scipy_contingency_test() -> None:
    rng = np.random.default_rng(4)
    for _ in range(20):
        a = rng.integers(0, 500, 8).astype(float)
        b = rng.integers(0, 500, 8).astype(float)
        a[2] = b[2] = 0.0  # an empty column is dropped, as it carries no information
        expected = stats.chi2_contingency(np.vstack([a, b])[:, [0, 1, 3, 4, 5, 6, 7]],
                                          correction=False).pvalue
        assert chi_square_p(a, b) == pytest.approx(expected, rel=1e-9)
    assert chi_square_p(np.array([5.0, 0.0]), np.array([0.0, 0.0])) == 1.0


def test_excess_rate_p_equals_a_one_sided_binomial_test() -> None:
    for k, n, p in [(1, 100, 0.0005), (3, 100, 0.0005), (40, 1000, 0.03), (5, 5, 0.5)]:
        expected = stats.binomtest(k, n, p, alternative="greater").pvalue
        assert excess_rate_p(k, n, p) == pytest.approx(expected, rel=1e-9)
    assert excess_rate_p(0, 100, 0.01) == 1.0


def test_calibration_error_equals_direct_ece_and_detects_miscalibration() -> None:
    rng = np.random.default_rng(5)
    scores = rng.uniform(0, 1, 5000)
    for labels, calibrated in [((rng.uniform(0, 1, 5000) < scores).astype(float), True),
                               ((rng.uniform(0, 1, 5000) < scores ** 2).astype(float), False)]:
        bins = np.minimum((scores * 10).astype(int), 9)
        n = np.bincount(bins, minlength=10).astype(float)
        y = np.bincount(bins, weights=labels, minlength=10)
        s = np.bincount(bins, weights=scores, minlength=10)
        direct = sum(n[k] / scores.size * abs(y[k] / n[k] - s[k] / n[k]) for k in range(10))
        ece, p_value = calibration_error(n, y, s)
        assert ece == pytest.approx(direct, rel=1e-12)
        assert (p_value > 0.01) is calibrated


def test_baseline_percentile_follows_the_empirical_cdf() -> None:
    sample = np.random.default_rng(6).gamma(2.0, 3.0, 20_000)
    profile = profile_numeric(sample)
    for value in np.quantile(sample, [0.01, 0.1, 0.37, 0.5, 0.93, 0.999]):
        ours = BaselineCdf(profile.fine_edges, profile.fine_proportions).share_below(value)
        assert ours == pytest.approx(np.mean(sample < value), abs=0.003)
    coarse = BaselineCdf(profile.edges, profile.proportions)
    assert coarse.share_below(-1.0) == 0.0
    assert coarse.share_below(1e9) == 1.0


def test_profile_edges_nest_and_discrete_values_get_their_own_bins() -> None:
    rng = np.random.default_rng(8)
    continuous = profile_numeric(rng.normal(size=10_000))
    assert set(continuous.edges) <= set(continuous.fine_edges)
    assert sum(continuous.fine_proportions) == pytest.approx(1.0)
    flag = profile_numeric((rng.random(10_000) < 0.12).astype(float))
    assert flag.proportions == pytest.approx((0.88, 0.12), abs=0.01)
    sample = rng.poisson(6, 10_000).astype(float)
    counts = profile_numeric(sample)
    assert set(counts.edges) <= set(counts.fine_edges)
    values = np.unique(sample)
    assert len(counts.fine_edges) - 1 == values.size
    fine = np.asarray(counts.fine_edges)
    assert (np.searchsorted(fine[1:-1], values, side="right") == np.arange(values.size)).all()


def test_rebin_keeps_mass_and_distance() -> None:
    rng = np.random.default_rng(9)
    raw = rng.normal(0, 1, 40_000)
    source = bin_distribution(raw, np.asarray(profile_numeric(raw).fine_edges))
    target_edges = np.asarray(profile_numeric(rng.normal(0.5, 1, 40_000)).fine_edges)
    moved = rebin(source, target_edges)
    assert moved.total == pytest.approx(source.total)
    direct = bin_distribution(raw, target_edges)
    assert wasserstein_binned(moved, direct) < 0.01
    same = rebin(source, source.edges)
    np.testing.assert_allclose(same.masses, source.masses, atol=1e-6)
