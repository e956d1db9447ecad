"""The long-lived incident objects of one replica, kept on the Runtime."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from prometheus_client import CollectorRegistry, Counter

from explainers.types import FloatMatrix
from storage.protocols import IncidentLinks, IncidentStore, JobQueue, RecordListing, TraceHolds

# Rows of the background sample explained for the baseline's mean |attribution|: exact
# tree and linear explainers are cheap; model-agnostic ones cost a model call per
# coalition and background row, so they get a small sample.
BASELINE_ROWS = 200
AGNOSTIC_BASELINE_ROWS = 20
_CHEAP_METHODS = frozenset({"tree_shap", "linear_shap"})


class IncidentBackend(IncidentStore, JobQueue, Protocol):
    """The incident store: incidents, attachments and the outbox in one backend."""


class TraceSide(IncidentLinks, RecordListing, TraceHolds, Protocol):
    """What incidents need of the trace store beyond `TraceStore` and `RecordLog`."""


class IncidentMetrics:
    """Counters of exports and backfills, on the app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.exports = Counter(
            "whylens_incident_export_attempts_total",
            "Incident export attempts, by target and outcome (done, retry, failed)",
            ["target", "outcome"], registry=registry)
        self.backfill = Counter(
            "whylens_incident_backfill_records_total",
            "Records visited by incident backfills, by outcome",
            ["outcome"], registry=registry)
        self.link_errors = Counter(
            "whylens_incident_link_errors_total",
            "Stored traces whose incident link (hold, attachment) failed", registry=registry)
        self.worker_errors = Counter(
            "whylens_outbox_worker_errors_total", "Outbox jobs that raised unexpectedly",
            ["kind"], registry=registry)


class BaselineCache:
    """Mean |attribution| per feature over a version's background sample, computed once."""

    def __init__(self) -> None:
        self._values: dict[tuple[str, str, str], dict[str, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str]) -> dict[str, float] | None:
        """The cached baseline of (name, version, manifest sha256), if computed."""
        with self._lock:
            return self._values.get(key)

    def compute(self, key: tuple[str, str, str], method: str, background: FloatMatrix,
                explain: ExplainRows) -> dict[str, float]:
        """Explain the background rows (CPU-bound: call in a thread) and cache the means."""
        cached = self.get(key)
        if cached is not None:
            return cached
        rows = BASELINE_ROWS if method in _CHEAP_METHODS else AGNOSTIC_BASELINE_ROWS
        names, values = explain(background[:rows])
        means = ({n: 0.0 for n in names} if len(values) == 0 else
                 dict(zip(names, (float(v) for v in np.abs(values).mean(axis=0)), strict=True)))
        with self._lock:
            self._values[key] = means
        return means


class ExplainRows(Protocol):
    """Explains rows; returns feature names and the (n, M) attributions."""

    def __call__(self, rows: FloatMatrix) -> tuple[tuple[str, ...], FloatMatrix]: ...


@dataclass(slots=True)
class IncidentRuntime:
    """Incident store, the trace store's incident side, caches and the outbox wake-up."""

    store: IncidentBackend
    traces: TraceSide
    metrics: IncidentMetrics
    baselines: BaselineCache = field(default_factory=BaselineCache)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def nudge(self) -> None:
        """Tell this replica's outbox worker that a job was queued."""
        self.wake.set()
