"""Binned distributions with open tails, and Wasserstein-1 between them (pure numpy).

A binned distribution carries in-range bin masses on shared edges plus two open tails
(values below the first edge and above the last one, each with its mean distance to the
edge), so live windows aggregated as integer counts still give an accurate Wasserstein-1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from explainers.drift_stats import bin_counts
from explainers.types import FloatVector


@dataclass(frozen=True, slots=True)
class BinnedDistribution:
    """Counts (or masses) of a numeric variable on fixed edges, with open tails.

    `masses[j]` counts values in [edges[j], edges[j+1]) (the last bin is closed);
    `below`/`above` count values outside [edges[0], edges[-1]] and `below_distance`/
    `above_distance` are their mean distances to the nearest edge.
    """

    edges: FloatVector
    masses: FloatVector
    below: float = 0.0
    below_distance: float = 0.0
    above: float = 0.0
    above_distance: float = 0.0

    @property
    def total(self) -> float:
        """Mass in the bins and both tails."""
        return float(self.masses.sum()) + self.below + self.above

    def psi_counts(self, groups: np.ndarray) -> FloatVector:
        """Sum bin masses into coarser bins (`groups[j]` = coarse bin of fine bin j).

        Tails join the first and last coarse bins: PSI bins are open-ended.
        """
        coarse = np.bincount(groups, weights=self.masses, minlength=int(groups.max()) + 1)
        coarse[0] += self.below
        coarse[-1] += self.above
        return coarse.astype(np.float64)


def bin_distribution(values: FloatVector, edges: FloatVector) -> BinnedDistribution:
    """Bin raw values (NaN ignored) into a distribution with open tails."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    edges = np.asarray(edges, dtype=np.float64)
    low, high = edges[0], edges[-1]
    below, above = values[values < low], values[values > high]
    inside = values[(values >= low) & (values <= high)]
    return BinnedDistribution(
        edges=edges, masses=bin_counts(inside, edges), below=float(below.size),
        below_distance=float((low - below).mean()) if below.size else 0.0,
        above=float(above.size),
        above_distance=float((above - high).mean()) if above.size else 0.0,
    )


def wasserstein_binned(a: BinnedDistribution, b: BinnedDistribution) -> float:
    """Wasserstein-1 between two binned distributions on the same edges.

    Each is modelled as uniform within a bin and as a point mass at the mean position of
    each tail; W1 = ∫₀¹ |Q_a(u) − Q_b(u)| du is then computed exactly, segment by segment
    of the merged quantile grid (both quantile functions are linear on each segment).
    """
    if a.total <= 0 or b.total <= 0:
        return math.nan
    cum_a, start_a, end_a = _quantile_pieces(a)
    cum_b, start_b, end_b = _quantile_pieces(b)
    grid = np.union1d(cum_a, cum_b)
    lo, hi = grid[:-1], grid[1:]
    keep = hi > lo
    lo, hi = lo[keep], hi[keep]
    mid = (lo + hi) / 2.0
    qa_lo, qa_hi = _evaluate(cum_a, start_a, end_a, mid, lo, hi)
    qb_lo, qb_hi = _evaluate(cum_b, start_b, end_b, mid, lo, hi)
    d0, d1 = qa_lo - qb_lo, qa_hi - qb_hi
    width = hi - lo
    magnitude = np.abs(d0) + np.abs(d1)
    crossing = d0 * d1 < 0
    # A sign change inside the segment leaves two triangles instead of one trapezoid.
    safe = np.where(magnitude > 0, magnitude, 1.0)
    area = np.where(crossing, (d0 ** 2 + d1 ** 2) / (2.0 * safe), magnitude / 2.0) * width
    return float(area.sum())


def _quantile_pieces(d: BinnedDistribution) -> tuple[FloatVector, FloatVector, FloatVector]:
    edges = np.asarray(d.edges, dtype=np.float64)
    low_point = edges[0] - d.below_distance
    high_point = edges[-1] + d.above_distance
    masses = np.concatenate(([d.below], np.asarray(d.masses, dtype=np.float64), [d.above]))
    starts = np.concatenate(([low_point], edges[:-1], [high_point]))
    ends = np.concatenate(([low_point], edges[1:], [high_point]))
    cum = np.concatenate(([0.0], np.cumsum(masses) / masses.sum()))
    cum[-1] = 1.0
    return cum, starts, ends


def _evaluate(cum: FloatVector, starts: FloatVector, ends: FloatVector, mid: FloatVector,
              lo: FloatVector, hi: FloatVector) -> tuple[FloatVector, FloatVector]:
    piece = np.clip(np.searchsorted(cum, mid, side="right") - 1, 0, starts.size - 1)
    base = cum[piece]
    mass = np.maximum(cum[piece + 1] - base, 1e-300)
    slope = (ends[piece] - starts[piece]) / mass
    return starts[piece] + (lo - base) * slope, starts[piece] + (hi - base) * slope


def rebin(source: BinnedDistribution, edges: FloatVector) -> BinnedDistribution:
    """Re-express a distribution on other edges (uniform within each source bin).

    Used to compare windows of two model versions whose baselines have different edges.
    """
    target = np.asarray(edges, dtype=np.float64)
    positions, masses, widths = _pieces(source)
    cdf = np.array([_mass_below(positions, masses, widths, x) for x in target])
    inner = np.diff(cdf)
    below = float(cdf[0])
    above = float(max(source.total - cdf[-1], 0.0))
    below_mean = _mean_below(positions, masses, widths, target[0]) if below > 0 else target[0]
    above_mean = (_mean_above(positions, masses, widths, target[-1], source.total - cdf[-1])
                  if above > 0 else target[-1])
    return BinnedDistribution(
        edges=target, masses=np.maximum(inner, 0.0), below=below,
        below_distance=float(max(target[0] - below_mean, 0.0)), above=above,
        above_distance=float(max(above_mean - target[-1], 0.0)),
    )


def _pieces(d: BinnedDistribution) -> tuple[FloatVector, FloatVector, FloatVector]:
    """(start, mass, width) of every piece: tail point masses have width 0."""
    edges = np.asarray(d.edges, dtype=np.float64)
    starts = np.concatenate(([edges[0] - d.below_distance], edges[:-1],
                             [edges[-1] + d.above_distance]))
    masses = np.concatenate(([d.below], np.asarray(d.masses, dtype=np.float64), [d.above]))
    widths = np.concatenate(([0.0], np.diff(edges), [0.0]))
    return starts, masses, widths


def _share_below(starts: FloatVector, widths: FloatVector, x: float) -> FloatVector:
    safe = np.where(widths > 0, widths, 1.0)
    return np.where(widths > 0, np.clip((x - starts) / safe, 0.0, 1.0),
                    (starts < x).astype(np.float64))


def _mass_below(starts: FloatVector, masses: FloatVector, widths: FloatVector,
                x: float) -> float:
    return float(np.sum(masses * _share_below(starts, widths, x)))


def _mean_below(starts: FloatVector, masses: FloatVector, widths: FloatVector,
                x: float) -> float:
    share = _share_below(starts, widths, x)
    weight = masses * share
    centre = starts + share * widths / 2.0
    return float(np.sum(weight * centre) / max(weight.sum(), 1e-300))


def _mean_above(starts: FloatVector, masses: FloatVector, widths: FloatVector, x: float,
                total_above: float) -> float:
    share = 1.0 - _share_below(starts, widths, x)
    weight = masses * share
    centre = starts + widths - share * widths / 2.0
    return float(np.sum(weight * centre) / max(total_above, 1e-300))
