"""Masking of feature values before anything is stored, logged or returned.

Modes, per manifest feature: `hash` → keyed HMAC-SHA256 pseudonym `h:<16 hex>` (the same
value always maps to the same pseudonym under one key, so operators can still group by
it); `bucket` → the baseline bin the value falls in (numeric) or the category if it is
among the baseline's frequent ones, else `other`; `redact` → `[redacted]`; `none` → the
value itself. Missing values stay `None`: missingness is a triage signal, not a secret.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import itertools
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from storage.manifest import CategoricalBaseline, Manifest, NumericBaseline

REDACTED = "[redacted]"
_PSEUDONYM_HEX = 16


def format_edge(value: float) -> str:
    """Render a bin edge with three significant digits and no exponent."""
    if value == 0 or not np.isfinite(value):
        return str(int(value)) if value == 0 else str(value)
    text = np.format_float_positional(
        value, precision=3, unique=False, fractional=False, trim="-"
    )
    return text


@dataclass(frozen=True, slots=True)
class _Rule:
    mode: str
    edges: tuple[float, ...] = ()
    labels: tuple[str, ...] = ()
    frequent: frozenset[str] = frozenset()


class Masker:
    """Masks feature values of one model version; safe to share between threads."""

    def __init__(self, manifest: Manifest, *, hmac_key: bytes) -> None:
        self._key = hmac_key
        self._rules: dict[str, _Rule] = {}
        for feature in manifest.features:
            if feature.mask == "none":
                continue
            baseline = manifest.baseline.features.get(feature.name)
            self._rules[feature.name] = _rule_for(feature.mask, baseline)

    @property
    def masked_features(self) -> frozenset[str]:
        """Names of the features that never leave in raw form."""
        return frozenset(self._rules)

    def mode_of(self, name: str) -> str | None:
        """The rule applied to a feature: `bucket` without baseline bins applies `redact`."""
        rule = self._rules.get(name)
        return None if rule is None else rule.mode

    def mask_features(self, features: Mapping[str, object]) -> dict[str, object]:
        """Return a copy with every masked feature replaced by its masked form."""
        if not self._rules:
            return dict(features)
        out = dict(features)
        for name, rule in self._rules.items():
            if name in out:
                out[name] = self._mask(name, rule, out[name])
        return out

    def mask_value(self, name: str, value: object) -> object:
        """Mask one value of a feature (identity for unmasked features)."""
        rule = self._rules.get(name)
        return value if rule is None else self._mask(name, rule, value)

    def pseudonym(self, name: str, value: object) -> str:
        """Return the keyed pseudonym of a value (used by `hash` and fingerprints)."""
        message = f"{name}\x00{_canonical(value)}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).hexdigest()
        return "h:" + digest[:_PSEUDONYM_HEX]

    def fingerprint(self, ordered_values: list[object]) -> str:
        """Return a keyed HMAC of a whole feature vector (detects identical inputs)."""
        message = "\x1f".join(_canonical(v) for v in ordered_values).encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def _mask(self, name: str, rule: _Rule, value: object) -> object:
        if value is None:
            return None
        if rule.mode == "hash":
            return self.pseudonym(name, value)
        if rule.mode == "redact":
            return REDACTED
        return _bucket(rule, value)


def _rule_for(mode: str, baseline: NumericBaseline | CategoricalBaseline | None) -> _Rule:
    if mode != "bucket":
        return _Rule(mode)
    if isinstance(baseline, NumericBaseline) and len(baseline.edges) >= 2:
        edges = tuple(baseline.edges)
        labels = tuple(
            f"{format_edge(lo)}–{format_edge(hi)}" for lo, hi in itertools.pairwise(edges)
        )
        return _Rule(mode, edges=edges, labels=labels)
    if isinstance(baseline, CategoricalBaseline):
        return _Rule(mode, frequent=frozenset(baseline.frequencies))
    # Without a baseline there is nothing safe to bucket into: redact instead.
    return _Rule("redact")


def _bucket(rule: _Rule, value: object) -> str:
    if rule.labels:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return REDACTED
        x = float(value)
        if not np.isfinite(x):
            return REDACTED
        if x < rule.edges[0]:
            return f"<{format_edge(rule.edges[0])}"
        if x > rule.edges[-1]:
            return f">{format_edge(rule.edges[-1])}"
        index = min(bisect.bisect_right(rule.edges, x) - 1, len(rule.labels) - 1)
        return rule.labels[index]
    text = _canonical(value)
    return text if text in rule.frequent else "other"


def _canonical(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
