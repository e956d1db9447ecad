"""Token bucket: explanations per second per model, with a burst allowance."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """Refills `rate` tokens per second up to `capacity`; each explanation takes one.

    Not thread-safe: it lives on the event loop, where ingest decides.
    """

    def __init__(self, rate: float, capacity: float, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or capacity < 1:
            raise ValueError("rate must be positive and capacity at least 1")
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._tokens = capacity
        self._stamp = clock()

    def take(self) -> bool:
        """Take one token; False (nothing taken) when the bucket is empty."""
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def resized(self, rate: float, capacity: float) -> TokenBucket:
        """A bucket with new limits that keeps the tokens left (at most the new capacity)."""
        bucket = TokenBucket(rate, capacity, clock=self._clock)
        self._refill()
        bucket._tokens = min(capacity, self._tokens)
        return bucket

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
