"""BaselineCdf answers exactly what baseline_percentile answers, bit for bit."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from explainers.drift_stats import BaselineCdf, baseline_percentile

values = st.floats(allow_nan=True, allow_infinity=True, width=64)


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_bins=st.integers(0, 120),
       probes=st.lists(values, min_size=1, max_size=20))
def test_same_share_as_baseline_percentile(seed: int, n_bins: int, probes: list[float]) -> None:
    rng = np.random.default_rng(seed)
    # repeated edges (zero-width bins) happen with discrete training values
    edges = np.sort(np.round(rng.normal(size=n_bins + 1), int(rng.integers(0, 4)))).tolist()
    proportions = rng.dirichlet(np.ones(max(n_bins, 1)))[:n_bins].tolist()
    cdf = BaselineCdf(edges, proportions)
    inside = rng.uniform(edges[0], edges[-1], size=5).tolist() if edges else []
    for value in [*probes, *inside, *edges]:
        expected = baseline_percentile(edges, proportions, value)
        got = cdf.share_below(value)
        assert (math.isnan(expected) and math.isnan(got)) or got == expected, value
