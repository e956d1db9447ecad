"""What the drift window stores keep: additive counters per bucket, keyed by window."""

from __future__ import annotations

from dataclasses import dataclass, field

ALL_RECORDS = ""
"""Segment name of the window that counts every record of a model version."""


def is_maximum(name: str) -> bool:
    """Tell whether a counter keeps the maximum of its increments instead of their sum.

    Last-seen times (epoch ms) are maxima: the field `t` (last record) and any field
    ending in `:t` (last non-missing value of a feature, last label).
    """
    return name == "t" or name.endswith(":t")


@dataclass(frozen=True, slots=True)
class WindowKey:
    """One stream of buckets: a model version, optionally one segment (`dimension:value`)."""

    model: str
    version: str
    segment: str = ALL_RECORDS


@dataclass(frozen=True, slots=True)
class BucketRef:
    """One time bucket at one resolution (a bucket starts at a multiple of its length)."""

    resolution_s: int
    start_ms: int


@dataclass(frozen=True, slots=True)
class WindowIncrement:
    """Increments to one bucket of one window, from one ingest batch.

    `counts` are integer increments, `sums` float increments, `maxima` epoch-ms values
    that replace the stored value only when larger (see `is_maximum`).
    """

    key: WindowKey
    bucket: BucketRef
    counts: dict[str, int] = field(default_factory=dict)
    sums: dict[str, float] = field(default_factory=dict)
    maxima: dict[str, int] = field(default_factory=dict)


def bucket_expiry_ms(bucket: BucketRef, retention_s: int) -> int:
    """When a bucket expires: its end plus the retention (event time, not write time)."""
    return bucket.start_ms + (bucket.resolution_s + retention_s) * 1000
