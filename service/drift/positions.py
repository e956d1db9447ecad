"""Where a decision's own values sit in its model's training baseline (trace drift block)."""

from __future__ import annotations

import math
from typing import Any

from explainers.drift_stats import BaselineCdf
from storage.manifest import CategoricalBaseline, Manifest, NumericBaseline

_PERCENTILE = "baseline_percentile"
_FREQUENCY = "baseline_frequency"
_NO_VALUE = {_PERCENTILE: None}


class BaselinePositions:
    """Per-version table, built once: each feature's baseline CDF or category shares.

    Masked features are withheld (their position would narrow down the raw value), as
    are missing values; a feature without a profile has no position.
    """

    def __init__(self, manifest: Manifest, masked: frozenset[str]) -> None:
        self._withheld: dict[str, dict[str, Any]] = {}
        self._numeric: dict[str, BaselineCdf] = {}
        self._categorical: dict[str, dict[str, float]] = {}
        for name, profile in manifest.baseline.features.items():
            key = _FREQUENCY if isinstance(profile, CategoricalBaseline) else _PERCENTILE
            self._withheld[name] = {key: None}
            if name in masked:
                continue
            if isinstance(profile, NumericBaseline):
                self._numeric[name] = BaselineCdf(profile.fine_edges or profile.edges,
                                                  profile.fine_proportions or profile.proportions)
            else:
                self._categorical[name] = profile.frequencies
        for name in masked - manifest.baseline.features.keys():
            self._withheld[name] = {_PERCENTILE: None}
        score = manifest.baseline.score
        self._score = BaselineCdf(score.fine_edges or score.edges,
                                  score.fine_proportions or score.proportions)

    def of(self, name: str, value: object) -> dict[str, Any]:
        """The position of `value` of feature `name` (a fresh dict the caller may keep)."""
        if value is None:
            return dict(self._withheld.get(name, _NO_VALUE))
        cdf = self._numeric.get(name)
        if cdf is not None:
            return {_PERCENTILE: _share(cdf, value)}
        frequencies = self._categorical.get(name)
        if frequencies is not None:
            text = str(int(value)) if isinstance(value, float) and value.is_integer() \
                else str(value)
            return {_FREQUENCY: frequencies.get(text)}
        withheld = self._withheld.get(name)
        return {} if withheld is None else dict(withheld)

    def score(self, score: object) -> float | None:
        """The percentile of a prediction score among the training scores."""
        return _share(self._score, score)


def _share(cdf: BaselineCdf, value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    share = cdf.share_below(float(value))
    return None if math.isnan(share) else round(share, 4)
