"""BaselineCdf against numpy's piecewise-linear interpolation of the binned CDF."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from explainers.drift_stats import BaselineCdf


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_bins=st.integers(1, 120),
       probes=st.lists(st.floats(-5, 5), min_size=1, max_size=20))
def test_share_is_the_interpolated_cdf(seed: int, n_bins: int, probes: list[float]) -> None:
    rng = np.random.default_rng(seed)
    edges = np.cumsum(rng.uniform(0.01, 1.0, n_bins + 1)) - 3.0
    proportions = rng.dirichlet(np.ones(n_bins))
    cdf = BaselineCdf(edges.tolist(), proportions.tolist())
    at_edges = np.concatenate(([0.0], np.cumsum(proportions)))
    for value in [*probes, *edges.tolist()]:
        assert cdf.share_below(value) == pytest.approx(
            float(np.interp(value, edges, at_edges)), abs=1e-12)


def test_a_point_mass_counts_as_below_its_own_value() -> None:
    # discrete training values give zero-width bins: [1, 1] holds half the rows
    cdf = BaselineCdf([0.0, 1.0, 1.0, 2.0], [0.25, 0.5, 0.25])
    assert cdf.share_below(1.0) == 0.75
    assert cdf.share_below(0.5) == 0.125
    assert cdf.share_below(1.5) == 0.875


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_no_share_for_non_finite_values(value: float) -> None:
    assert math.isnan(BaselineCdf([0.0, 1.0], [1.0]).share_below(value))


def test_no_share_without_bins() -> None:
    assert math.isnan(BaselineCdf([3.0], []).share_below(3.0))
