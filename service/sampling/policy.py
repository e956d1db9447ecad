"""The default sampling policy: cohorts always explained, near-threshold, then a stable rate."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

_HASH_SPACE = float(2**64)


@dataclass(frozen=True, slots=True)
class SamplingDecision:
    """Whether one record is explained, and the reason stored in its trace."""

    sampled: bool
    reason: str | None
    policy: str


def stable_fraction(request_id: str) -> float:
    """Map a request ID to [0, 1) the same way in every process and replay."""
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _HASH_SPACE


@dataclass(frozen=True, slots=True)
class DefaultPolicy:
    """First match wins: always-explained cohort, near threshold, then `rate`."""

    rate: float
    near_threshold: float
    always_cohorts: frozenset[str]
    name: str = "default"

    def decide(self, request_id: str, prediction: dict[str, Any],
               context: dict[str, Any]) -> SamplingDecision:
        """Decide for one record."""
        cohort = context.get("cohort")
        if isinstance(cohort, str) and cohort in self.always_cohorts:
            return SamplingDecision(True, cohort, self.name)
        if self.near_threshold > 0 and _near_threshold(prediction, self.near_threshold):
            return SamplingDecision(True, "near_threshold", self.name)
        if self.rate > 0 and stable_fraction(request_id) < self.rate:
            return SamplingDecision(True, "sampled", self.name)
        return SamplingDecision(False, None, self.name)


def _near_threshold(prediction: dict[str, Any], margin: float) -> bool:
    score = prediction.get("score")
    if score is None:
        return False
    threshold = prediction.get("threshold", 0.5)
    return bool(abs(float(score) - float(threshold)) <= margin)
