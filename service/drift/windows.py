"""Live drift windows of the running service: fed by ingest, read by reports and traces."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np

from explainers.drift_rules import DriftThresholds
from service.drift.layout import SegmentCodes, WindowLayout
from service.drift.metrics import DriftMetrics
from service.drift.positions import BaselinePositions
from service.model_loader import ReadyModel
from service.settings import DriftSettings
from service.validation import Envelope
from storage.drift.records import BucketRef, WindowIncrement, WindowKey
from storage.errors import StoreUnavailable
from storage.manifest import DriftOverrides, Manifest
from storage.protocols import DriftWindowStore

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

OTHER_SEGMENT = "other"
_SEGMENT_CACHE_S = 600.0
_READ_CACHE_ENTRIES = 512
# Records waiting for the drift writer beyond which new ones are not counted (logged).
_QUEUED_RECORDS = 200_000


@dataclass(frozen=True, slots=True)
class WindowSpan:
    """A window: whole buckets from `start_ms` (inclusive) to `end_ms` (exclusive)."""

    start_ms: int
    end_ms: int

    @property
    def seconds(self) -> float:
        """Length of the window."""
        return (self.end_ms - self.start_ms) / 1000.0

    def previous(self) -> WindowSpan:
        """The window of the same length just before this one."""
        length = self.end_ms - self.start_ms
        return WindowSpan(self.start_ms - length, self.start_ms)


def trailing_span(until_ms: int, length_s: int, bucket_s: int) -> WindowSpan:
    """The whole buckets covering `length_s` and ending with the bucket holding until−1ms."""
    size = bucket_s * 1000
    end = ((until_ms - 1) // size + 1) * size
    buckets = max(1, -(-length_s * 1000 // size))
    return WindowSpan(end - buckets * size, end)


def plan_buckets(span: WindowSpan, bucket_s: int, rollup_s: int) -> list[BucketRef]:
    """Cover a span with roll-up buckets where whole ones fit and fine buckets elsewhere."""
    fine, coarse = bucket_s * 1000, rollup_s * 1000
    first_whole = -(-span.start_ms // coarse) * coarse
    last_whole = span.end_ms // coarse * coarse
    if rollup_s == bucket_s or first_whole >= last_whole:
        return [BucketRef(bucket_s, s) for s in range(span.start_ms, span.end_ms, fine)]
    return ([BucketRef(bucket_s, s) for s in range(span.start_ms, first_whole, fine)]
            + [BucketRef(rollup_s, s) for s in range(first_whole, last_whole, coarse)]
            + [BucketRef(bucket_s, s) for s in range(last_whole, span.end_ms, fine)])


def resolve_thresholds(manifest: Manifest, settings: DriftSettings) -> DriftThresholds:
    """Defaults, then settings.thresholds, then the manifest's section, then settings.models."""
    thresholds = DriftThresholds()
    for overrides in (settings.thresholds, manifest.drift, settings.models.get(manifest.name)):
        if overrides is not None:
            thresholds = _apply(thresholds, overrides)
    return thresholds


def _apply(thresholds: DriftThresholds, overrides: DriftOverrides) -> DriftThresholds:
    changes = {k: v for k, v in overrides.model_dump().items() if v is not None}
    return replace(thresholds, **changes)


class DriftWindows:
    """Counts every new record into the store's windows and reads windows back (cached)."""

    def __init__(self, store: DriftWindowStore, settings: DriftSettings,
                 metrics: DriftMetrics) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self._layouts: dict[tuple[str, str, str], WindowLayout] = {}
        self._positions: dict[tuple[str, str, str], BaselinePositions] = {}
        self._segments: dict[tuple[str, str], tuple[float, set[str], set[str]]] = {}
        self._reads: OrderedDict[tuple[object, ...], tuple[float, dict[str, float]]] = \
            OrderedDict()
        self._reports: OrderedDict[tuple[object, ...], tuple[float, dict[str, Any]]] = \
            OrderedDict()
        self._queued: list[tuple[ReadyModel, Envelope]] = []
        self._writer: asyncio.Task[None] | None = None
        self._flush_now = asyncio.Event()

    def layout(self, ready: ReadyModel) -> WindowLayout:
        """The counter layout of a loaded version."""
        return _per_version(self._layouts, ready, lambda: WindowLayout(ready.manifest))

    def positions(self, ready: ReadyModel) -> BaselinePositions:
        """The baseline positions table of a loaded version (trace drift blocks)."""
        return _per_version(self._positions, ready, lambda: BaselinePositions(
            ready.manifest, ready.masker.masked_features))

    async def record(self, items: Sequence[tuple[ReadyModel, Envelope]]) -> None:
        """Queue new records for counting; the caller never waits for the drift store.

        The record is already logged when this runs: losing its window counts only
        blurs a drift picture, failing the ingest call would lose the record. A
        background writer counts what was queued within `write_delay_s` as one batch
        (one tally, one store write per bucket); window reads first wait for it, so a
        replica reads its own writes.
        """
        if not items:
            return
        if len(self._queued) + len(items) > _QUEUED_RECORDS:
            # The store has not kept up for a long while: bound memory, say so.
            self.metrics.window_errors.inc()
            logger.error("drift writer is behind: %d records not counted", len(items))
            return
        self._queued.extend(items)
        self.forget({(ready.manifest.name, ready.manifest.version) for ready, _ in items})
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_queued(),
                                               name="whylens-drift-writer")

    async def flush(self) -> None:
        """Count and write everything queued now (failures are logged and counted)."""
        while self._writer is not None and not self._writer.done():
            self._flush_now.set()
            await asyncio.shield(self._writer)

    async def _write_queued(self) -> None:
        if self.settings.write_delay_s > 0 and not self._flush_now.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush_now.wait(), self.settings.write_delay_s)
        while self._queued:
            items, self._queued = self._queued, []
            versions = {(ready.manifest.name, ready.manifest.version) for ready, _ in items}
            try:
                await self.store.add_window_counts(await self._increments(items))
            except StoreUnavailable as exc:
                self.metrics.window_errors.inc()
                logger.error("updating drift windows failed for %d records: %s",
                             len(items), exc)
            # Drop reads cached while the write was in flight: they missed these counts.
            self.forget(versions)
        self._flush_now.clear()

    def forget(self, versions: set[tuple[str, str]]) -> None:
        """Drop cached reads of versions this replica just wrote to (read your writes).

        Trace drift blocks (`remember`) are kept for their `cache_s`: under steady ingest
        every call writes, so dropping them would rebuild a whole report on every trace
        read, and a block of an hour-long window is no worse for missing this replica's
        last seconds than for missing other replicas' (docs/drift.md).
        """
        for key in [k for k in self._reads if k[1:3] in versions]:
            del self._reads[key]

    async def _increments(self, items: Sequence[tuple[ReadyModel, Envelope]]
                          ) -> list[WindowIncrement]:
        horizon = time.time_ns() // 1_000_000 - self.settings.retention_s * 1000
        groups: defaultdict[tuple[str, str], list[Envelope]] = defaultdict(list)
        models: dict[tuple[str, str], ReadyModel] = {}
        for ready, envelope in items:
            # A record older than the retention would land in an already expired bucket.
            if envelope.event_ms >= horizon:
                key = (ready.manifest.name, ready.manifest.version)
                groups[key].append(envelope)
                models[key] = ready
        increments: list[WindowIncrement] = []
        resolutions = sorted({self.settings.bucket_s, self.settings.rollup_s})
        for key, envelopes in groups.items():
            layout = self.layout(models[key])
            segments = await self._segment_codes(key[0], envelopes)
            scores = [_score(e.prediction) for e in envelopes]
            events = np.fromiter((e.event_ms for e in envelopes), dtype=np.int64,
                                 count=len(envelopes))
            increments += layout.tally([e.features for e in envelopes], scores, events,
                                       segments, resolutions=resolutions)
        return increments

    async def _segment_codes(self, model: str,
                             envelopes: Sequence[Envelope]) -> list[SegmentCodes]:
        out = []
        for dimension in self.settings.segment_dimensions:
            raw = [_segment_value(e.context.get(dimension)) for e in envelopes]
            if not any(v is not None for v in raw):
                continue
            admitted = await self.admitted(model, dimension, {v for v in raw if v is not None})
            values = sorted(admitted | {OTHER_SEGMENT})
            index = {v: i for i, v in enumerate(values)}
            other = index[OTHER_SEGMENT]
            codes = np.array([-1 if v is None else index.get(v, other) for v in raw],
                             dtype=np.int64)
            out.append(SegmentCodes(dimension, tuple(values), codes))
        return out

    async def admitted(self, model: str, dimension: str, values: set[str]) -> set[str]:
        """Which of the values have their own segment window (the rest pool as other)."""
        now = time.monotonic()
        cached = self._segments.get((model, dimension))
        if cached is None or cached[0] < now:
            cached = (now + _SEGMENT_CACHE_S, set(), set())
            self._segments[(model, dimension)] = cached
        _, known, refused = cached
        unknown = values - known - refused
        if unknown:
            granted = await self.store.admit_segments(model, dimension, sorted(unknown),
                                                      cap=self.settings.segment_cap)
            known |= granted
            refused |= unknown - granted
        return values & known

    async def read(self, key: WindowKey, span: WindowSpan) -> dict[str, float]:
        """Merged counters of a window, reused for `cache_s` seconds."""
        buckets = plan_buckets(span, self.settings.bucket_s, self.settings.rollup_s)
        cache_key = ("read", key.model, key.version, key.segment, span)
        now = time.monotonic()
        hit = self._reads.get(cache_key)
        if hit is not None and hit[0] > now:
            return hit[1]
        await self.flush()
        counts = await self.store.read_window_counts(key, buckets)
        if self.settings.cache_s > 0:
            self._reads[cache_key] = (now + self.settings.cache_s, counts)
            self._reads.move_to_end(cache_key)
            while len(self._reads) > _READ_CACHE_ENTRIES:
                self._reads.popitem(last=False)
        return counts

    async def remember(self, key: tuple[object, ...],
                       compute: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        """Return a report computed within the last `cache_s` seconds, or compute it."""
        now = time.monotonic()
        hit = self._reports.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        report = await compute()
        if self.settings.cache_s > 0:
            self._reports[key] = (now + self.settings.cache_s, report)
            while len(self._reports) > _READ_CACHE_ENTRIES:
                self._reports.popitem(last=False)
        return report

    async def close(self) -> None:
        """Write the queued counts, then release the store."""
        await self.flush()
        await self.store.close()


def _per_version(cache: dict[tuple[str, str, str], _T], ready: ReadyModel,
                 build: Callable[[], _T]) -> _T:
    # keyed by the manifest's digest too: a re-published version gets fresh tables
    key = (ready.manifest.name, ready.manifest.version, ready.manifest_sha256)
    found = cache.get(key)
    if found is None:
        found = cache[key] = build()
    return found


def _score(prediction: dict[str, object]) -> float | None:
    score = prediction.get("score")
    return float(score) if isinstance(score, int | float) and not isinstance(score, bool) \
        else None


def _segment_value(value: object) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
