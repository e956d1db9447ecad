"""What a live window is compared with: the training profile, or another window.

A reference answers, per variable of the window's layout, a distribution on that
layout's bins plus its missing and total counts. Another version's window is re-binned
onto this version's edges (numeric) or matched by category name (categorical).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from explainers.drift_binned import BinnedDistribution, rebin
from service.drift.layout import CategoricalColumn, NumericColumn, WindowLayout
from storage.manifest import CategoricalBaseline, NumericBaseline

SCORE_SAMPLE_ROWS = 20000
"""Rows the publisher scores to build the score baseline (service.publishing)."""


@dataclass(frozen=True, slots=True)
class Counted:
    """A reference's view of one variable."""

    present: BinnedDistribution | np.ndarray
    """Numeric: a binned distribution; categorical: counts per category bin."""
    missing: float
    total: float


def window_numeric(column: NumericColumn, counts: dict[str, float]) -> BinnedDistribution:
    """The window's distribution of a numeric variable from its counters."""
    f = column.field
    masses = np.array([counts.get(f"{f}:{j}", 0.0) for j in range(column.n_bins)])
    below, above = counts.get(f"{f}:lo", 0.0), counts.get(f"{f}:hi", 0.0)
    return BinnedDistribution(
        edges=column.edges, masses=masses, below=below,
        below_distance=counts.get(f"{f}:lod", 0.0) / below if below else 0.0,
        above=above, above_distance=counts.get(f"{f}:hid", 0.0) / above if above else 0.0,
    )


def window_categorical(column: CategoricalColumn, counts: dict[str, float]) -> np.ndarray:
    """The window's counts per category bin (top categories, other, new)."""
    return np.array([counts.get(f"{column.field}:{j}", 0.0) for j in range(column.n_bins)])


class TrainingReference:
    """The training profile in the version's manifest."""

    name = "training"

    def __init__(self, layout: WindowLayout) -> None:
        self._baseline = layout.manifest.baseline

    def numeric(self, column: NumericColumn) -> Counted | None:
        """Training distribution on the column's bins (no tails by construction)."""
        profile = self._baseline.features.get(column.name)
        if not isinstance(profile, NumericBaseline):
            return None
        rows = float(self._baseline.rows)
        present = rows * (1.0 - profile.missing_rate)
        return Counted(BinnedDistribution(column.edges, column.baseline_proportions * present),
                       rows - present, rows)

    def categorical(self, column: CategoricalColumn) -> Counted | None:
        """Training frequencies (top categories, other, and zero for new ones)."""
        profile = self._baseline.features.get(column.name)
        if not isinstance(profile, CategoricalBaseline):
            return None
        rows = float(self._baseline.rows)
        present = rows * (1.0 - profile.missing_rate)
        return Counted(column.baseline_proportions * present, rows - present, rows)

    def score(self, column: NumericColumn) -> Counted:
        """Training scores on the score column's bins."""
        rows = float(min(self._baseline.rows, SCORE_SAMPLE_ROWS))
        return Counted(BinnedDistribution(column.edges, column.baseline_proportions * rows),
                       0.0, rows)

    def labels(self) -> tuple[float, float] | None:
        """(positives, labels) of the training data, when its label rate is known."""
        rate = self._baseline.label_rate
        if rate is None:
            return None
        return rate * self._baseline.rows, float(self._baseline.rows)


class WindowReference:
    """Another window: the previous one of this version, or one of another version."""

    def __init__(self, name: str, layout: WindowLayout, source: WindowLayout,
                 counts: dict[str, float]) -> None:
        self.name = name
        self._same = source is layout
        self._numeric = {c.name: c for c in source.numeric}
        self._categorical = {c.name: c for c in source.categorical}
        self._source_score = source.score
        self._counts = counts

    def numeric(self, column: NumericColumn) -> Counted | None:
        """The reference window's distribution on the column's bins."""
        source = self._numeric.get(column.name)
        if source is None:
            return None
        return Counted(self._numeric_on(source, column),
                       self._counts.get(f"{source.field}:m", 0.0), self._counts.get("n", 0.0))

    def categorical(self, column: CategoricalColumn) -> Counted | None:
        """The reference window's counts matched to the column's category bins."""
        source = self._categorical.get(column.name)
        if source is None:
            return None
        counts = window_categorical(source, self._counts)
        if not self._same:
            counts = _match_categories(source, column, counts)
        return Counted(counts, self._counts.get(f"{source.field}:m", 0.0),
                       self._counts.get("n", 0.0))

    def score(self, column: NumericColumn) -> Counted:
        """The reference window's scores on the score column's bins."""
        dist = self._numeric_on(self._source_score, column)
        return Counted(dist, 0.0, dist.total)

    def labels(self) -> tuple[float, float] | None:
        """(positives, labels) of the reference window."""
        labelled = self._counts.get("l:n", 0.0)
        return (self._counts.get("l:pos", 0.0), labelled) if labelled else None

    def _numeric_on(self, source: NumericColumn, column: NumericColumn) -> BinnedDistribution:
        dist = window_numeric(source, self._counts)
        if self._same or (source.edges.size == column.edges.size
                          and np.array_equal(source.edges, column.edges)):
            return dist
        return rebin(dist, column.edges) if dist.total > 0 else \
            BinnedDistribution(column.edges, np.zeros(column.n_bins))


def _match_categories(source: CategoricalColumn, target: CategoricalColumn,
                      counts: np.ndarray) -> np.ndarray:
    out = np.zeros(target.n_bins)
    other, new = target.n_bins - 2, target.n_bins - 1
    index = {name: j for j, name in enumerate(target.categories)}
    for j, name in enumerate(source.categories):
        out[index.get(name, other)] += counts[j]
    out[other] += counts[source.n_bins - 2]
    out[new] += counts[source.n_bins - 1]
    return out


Reference = TrainingReference | WindowReference
