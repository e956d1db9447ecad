"""The counters of one model version's live windows, and how a batch of records fills them.

Counter names (fields of a bucket; `i` is the feature's position in the manifest):

    n, t                      records, last record event time (ms, a maximum)
    i:j                       numeric: values in fine bin j; categorical: in category bin j
                              (the baseline's top categories, then `other`, then `new`)
    i:lo, i:hi, i:m           numeric values below / above the training range, missing values
    i:sum, i:sq               Σ (x − baseline mean) and its squares (stable moments)
    i:lod, i:hid              Σ distance below / above the training range
    i:t                       last event time with a non-missing value (a maximum)
    s:j, s:lo, s:hi, s:sum... the logged score, binned like a numeric feature
    l:...                     labels (see labels.py)

Only bin indices and aggregates reach the store, and a masked feature's value never does:
a masked numeric feature is counted on its PSI bins only (the resolution its `bucket`
mask shows) with no sums or distances, and a hashed or redacted categorical feature only
as known / new / missing, since category positions map back to names via the manifest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import numpy as np

from explainers.encoding import category_lookup
from storage.drift.records import ALL_RECORDS, BucketRef, WindowIncrement, WindowKey
from storage.manifest import CategoricalBaseline, Manifest, NumericBaseline

SCORE = "s"
_NUMERIC_TAIL = ("lo", "hi", "m")
_MOMENTS = ("sum", "sq", "lod", "hid")


@dataclass(frozen=True, slots=True)
class NumericColumn:
    """A numeric variable (feature or score) counted on fixed edges."""

    field: str
    name: str
    edges: np.ndarray
    baseline_proportions: np.ndarray
    groups: np.ndarray
    """PSI bin of each fine bin."""
    center: float
    """Baseline mean, subtracted before summing moments."""

    @property
    def n_bins(self) -> int:
        """Fine bins between the first and last edge."""
        return int(self.edges.size - 1)


@dataclass(frozen=True, slots=True)
class CategoricalColumn:
    """A categorical feature counted per baseline category, `other` and `new`."""

    field: str
    name: str
    categories: tuple[str, ...]
    lookup: dict[object, int]
    baseline_proportions: np.ndarray

    @property
    def n_bins(self) -> int:
        """Top categories, then other (known but rare), then new (never seen)."""
        return len(self.categories) + 2


@dataclass(frozen=True, slots=True)
class SegmentCodes:
    """Per record, the index of its segment value in `values` (−1: none)."""

    dimension: str
    values: tuple[str, ...]
    codes: np.ndarray


def _numeric_column(field: str, name: str, baseline: NumericBaseline | None, *,
                    edges: Sequence[float], proportions: Sequence[float],
                    fine_edges: Sequence[float] | None,
                    fine_proportions: Sequence[float] | None, center: float) -> NumericColumn:
    coarse = np.asarray(edges, dtype=np.float64)
    if fine_edges and fine_proportions:
        fine = np.asarray(fine_edges, dtype=np.float64)
        fine_props = np.asarray(fine_proportions, dtype=np.float64)
    else:
        fine, fine_props = coarse, np.asarray(proportions, dtype=np.float64)
    # Fine edges include the PSI edges, so each fine bin's midpoint picks its PSI bin.
    mids = (fine[:-1] + fine[1:]) / 2.0
    groups = np.clip(np.searchsorted(coarse[1:-1], mids, side="right"), 0,
                     max(coarse.size - 2, 0))
    return NumericColumn(field, name, fine, fine_props, groups.astype(np.int64), center)


class WindowLayout:
    """Counter names and encoders of one model version (built once per loaded version)."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.numeric: list[NumericColumn] = []
        self.categorical: list[CategoricalColumn] = []
        self.masked: frozenset[str] = frozenset(
            f.name for f in manifest.features if f.mask != "none")
        for index, feature in enumerate(manifest.features):
            baseline = manifest.baseline.features.get(feature.name)
            masked = feature.mask != "none"
            if isinstance(baseline, NumericBaseline) and len(baseline.edges) >= 2:
                # A masked feature is counted no finer than its `bucket` mask would show
                # (the PSI bins), and without moments, which could give a value back.
                self.numeric.append(_numeric_column(
                    str(index), feature.name, baseline, edges=baseline.edges,
                    proportions=baseline.proportions,
                    fine_edges=None if masked else baseline.fine_edges,
                    fine_proportions=None if masked else baseline.fine_proportions,
                    center=baseline.mean))
            elif isinstance(baseline, CategoricalBaseline):
                # Category positions map back to names through the manifest: a hashed or
                # redacted feature is only counted as known / new / missing.
                hidden = feature.mask in ("hash", "redact")
                self.categorical.append(_categorical_column(
                    str(index), feature.name, baseline, feature.categories or [],
                    hidden=hidden))
        score = manifest.baseline.score
        self.score = _numeric_column(
            SCORE, "score", None, edges=score.edges, proportions=score.proportions,
            fine_edges=score.fine_edges, fine_proportions=score.fine_proportions,
            center=score.mean if score.mean is not None else 0.0)
        self._numeric_getter = itemgetter(*(c.name for c in self.numeric)) \
            if self.numeric else None
        self._build_slots()

    def _build_slots(self) -> None:
        names = ["n"]
        columns = [*self.numeric, self.score]
        bases = []
        for column in columns:
            bases.append(len(names))
            names += [f"{column.field}:{j}" for j in range(column.n_bins)]
            names += [f"{column.field}:{tail}" for tail in _NUMERIC_TAIL]
        self._categorical_base: list[int] = []
        for cat in self.categorical:
            self._categorical_base.append(len(names))
            names += [f"{cat.field}:{j}" for j in range(cat.n_bins)] + [f"{cat.field}:m"]
        self.count_names = np.array(names, dtype=object)
        # Moments are laid out moment-major: all `sum`, then all `sq`, `lod`, `hid`.
        self.sum_names = np.array([f"{c.field}:{m}" for m in _MOMENTS for c in columns],
                                  dtype=object)
        self.max_names = np.array(["t", *(f"{c.field}:t" for c in self.numeric),
                                   *(f"{c.field}:t" for c in self.categorical)], dtype=object)
        # Per numeric column (features, then the score): slot of bin 0, bin count, range.
        self._bases = np.array(bases, dtype=np.int64)
        self._tails = np.array([c.n_bins for c in columns], dtype=np.int64)
        self._lows = np.array([c.edges[0] for c in columns])
        self._highs = np.array([c.edges[-1] for c in columns])
        self._centers = np.array([c.center for c in columns])
        self._moments = np.array([0.0 if c.name in self.masked and c is not self.score
                                  else 1.0 for c in columns])
        self._inner = [c.edges[1:-1] for c in columns]

    def tally(self, rows: Sequence[dict[str, Any]], scores: Sequence[float | None],
              events_ms: np.ndarray, segments: Sequence[SegmentCodes], *,
              resolutions: Sequence[int]) -> list[WindowIncrement]:
        """Count a batch of validated records into per-bucket, per-segment increments."""
        if len(rows) == 0:
            return []
        slots, sums, present = self._encode(rows, scores)
        seen = np.where(present, events_ms[:, None], -1)
        maxima = np.concatenate((events_ms[:, None], seen), axis=1)
        increments = []
        for resolution, start, segment, members in _memberships(events_ms, segments,
                                                                resolutions):
            increments.append(self._increment(
                WindowKey(self.manifest.name, self.manifest.version, segment),
                BucketRef(resolution, start), slots, sums, maxima, members))
        return increments

    def _encode(self, rows: Sequence[dict[str, Any]],
                scores: Sequence[float | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(rows)
        width = len(self.numeric) + 1
        values = np.empty((n, width), dtype=np.float64, order="F")
        if self._numeric_getter is not None:
            picked = [self._numeric_getter(row) for row in rows]
            # None becomes NaN (missing) in a float array.
            values[:, :-1] = np.array(picked, dtype=np.float64).reshape(n, width - 1)
        values[:, -1] = np.array(scores, dtype=np.float64)
        missing = np.isnan(values)
        below, above = values < self._lows, values > self._highs
        bins = np.empty((n, width), dtype=np.int64)
        for c, inner in enumerate(self._inner):
            bins[:, c] = np.searchsorted(inner, values[:, c], side="right")
        tails = self._tails
        numeric_slots = self._bases + np.where(
            missing, tails + 2, np.where(below, tails, np.where(above, tails + 1, bins)))
        # The score has no missing counter: a record without a score is simply not counted.
        numeric_slots[missing[:, -1], -1] = -1
        shifted = np.where(missing, 0.0, values - self._centers) * self._moments
        sums = np.concatenate((shifted, shifted * shifted,
                               np.where(below, self._lows - values, 0.0) * self._moments,
                               np.where(above, values - self._highs, 0.0) * self._moments),
                              axis=1)
        slots = np.empty((n, 1 + width + len(self.categorical)), dtype=np.int64)
        slots[:, 0] = 0
        slots[:, 1: 1 + width] = numeric_slots
        present_cat = np.zeros((n, len(self.categorical)), dtype=bool)
        for k, cat in enumerate(self.categorical):
            codes = _category_bins(cat, rows)
            present_cat[:, k] = codes < cat.n_bins
            slots[:, 1 + width + k] = self._categorical_base[k] + codes
        present = np.concatenate((~missing[:, :-1], present_cat), axis=1)
        return slots, sums, present

    def _increment(self, key: WindowKey, bucket: BucketRef, slots: np.ndarray,
                   sums: np.ndarray, maxima: np.ndarray,
                   members: np.ndarray | None) -> WindowIncrement:
        if members is not None:
            slots, sums, maxima = slots[members], sums[members], maxima[members]
        flat = slots[slots >= 0]
        counts = np.bincount(flat, minlength=self.count_names.size)
        used = np.flatnonzero(counts)
        totals = sums.sum(axis=0)
        summed = np.flatnonzero(totals)
        largest = maxima.max(axis=0)
        latest = np.flatnonzero(largest >= 0)
        return WindowIncrement(
            key, bucket,
            counts=dict(zip(self.count_names[used].tolist(), counts[used].tolist(),
                            strict=True)),
            sums=dict(zip(self.sum_names[summed].tolist(), totals[summed].tolist(),
                          strict=True)),
            maxima=dict(zip(self.max_names[latest].tolist(), largest[latest].tolist(),
                            strict=True)),
        )


def _categorical_column(field: str, name: str, baseline: CategoricalBaseline,
                        categories: Sequence[object], *, hidden: bool) -> CategoricalColumn:
    top = () if hidden else tuple(baseline.frequencies)
    lookup: dict[object, int] = dict(category_lookup(list(top)))
    other = len(top)
    known = [c for c in categories if isinstance(c, str | int | float)]
    if hidden:
        known += list(baseline.frequencies)
    for value in category_lookup(known):
        lookup.setdefault(value, other)
    shares = [] if hidden else list(baseline.frequencies.values())
    proportions = np.array([*shares, baseline.other if not hidden else 1.0, 0.0])
    return CategoricalColumn(field, name, top, lookup, proportions)


def _category_bins(column: CategoricalColumn, rows: Sequence[dict[str, Any]]) -> np.ndarray:
    """Bin per record: a top category, other (K), new (K+1) or missing (K+2)."""
    new, missing = column.n_bins - 1, column.n_bins
    get = column.lookup.get
    name = column.name
    out = np.empty(len(rows), dtype=np.int64)
    for r, row in enumerate(rows):
        value = row.get(name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            out[r] = missing
        else:
            out[r] = get(value, new)
    return out


def _memberships(events_ms: np.ndarray, segments: Sequence[SegmentCodes],
                 resolutions: Sequence[int]) -> list[tuple[int, int, str, np.ndarray | None]]:
    """(resolution, bucket start, segment, record indices or None for all) of every touched
    window bucket."""
    out: list[tuple[int, int, str, np.ndarray | None]] = []
    everyone = np.arange(events_ms.size)
    for resolution in resolutions:
        size = resolution * 1000
        starts = events_ms // size * size
        unique, inverse = np.unique(starts, return_inverse=True)
        if unique.size == 1:
            out.append((resolution, int(unique[0]), ALL_RECORDS, None))
        else:
            for u, start in enumerate(unique):
                out.append((resolution, int(start), ALL_RECORDS, everyone[inverse == u]))
        for seg in segments:
            has = seg.codes >= 0
            if not has.any():
                continue
            width = len(seg.values)
            combined = inverse[has] * width + seg.codes[has]
            members = everyone[has]
            for code in np.unique(combined):
                out.append((resolution, int(unique[code // width]),
                            f"{seg.dimension}:{seg.values[code % width]}",
                            members[combined == code]))
    return out
