"""Drift as Prometheus gauges, recomputed by a periodic task (never per scrape).

Label cardinality is bounded: only versions behind the preloaded aliases (production,
canary, ...) of loaded models, and at most `gauge_features` features per version.
Levels: -1 insufficient_data, 0 ok, 1 warn, 2 drift (deploy/prometheus-rules.yml).
"""

from __future__ import annotations

import asyncio
import logging
import time

from explainers.drift_rules import STATUS_LEVEL
from explainers.errors import ExplainerError
from service.drift.queries import TRAINING, window_report
from service.drift.windows import trailing_span
from service.errors import ServiceError
from service.runtime import Runtime
from storage.drift.records import ALL_RECORDS
from storage.errors import StorageError

logger = logging.getLogger(__name__)


async def _tracked_versions(runtime: Runtime) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    for name in sorted({r.manifest.name for r in runtime.loader.loaded()}):
        aliases = await runtime.loader.catalog.aliases(name)
        for alias in runtime.settings.preload_aliases:
            version = aliases.get(alias)
            if version is not None and (name, version) not in seen:
                seen.append((name, version))
    return seen


async def refresh_gauges(runtime: Runtime) -> None:
    """Recompute every drift gauge, then swap them in at once (no await in between)."""
    settings = runtime.settings.drift
    until = time.time_ns() // 1_000_000
    span = trailing_span(until, settings.gauge_window_s, settings.bucket_s)
    reports = []
    for name, version in await _tracked_versions(runtime):
        ready = await runtime.loader.get(name, version)
        reports.append((name, version,
                        await window_report(runtime, ready, span, ALL_RECORDS, TRAINING)))
    metrics = runtime.drift.metrics
    metrics.clear()
    for name, version, report in reports:
        for feature, entry in list(report["features"].items())[: settings.gauge_features]:
            metrics.level.labels(name, version, feature).set(STATUS_LEVEL[entry["status"]])
            if entry["psi"] is not None:
                metrics.psi.labels(name, version, feature).set(entry["psi"])
            if entry.get("wasserstein_norm") is not None:
                metrics.wasserstein.labels(name, version, feature).set(entry["wasserstein_norm"])
        prediction, labels = report["prediction"], report["labels"]
        metrics.prediction_level.labels(name, version).set(STATUS_LEVEL[prediction["status"]])
        if prediction["psi"] is not None:
            metrics.prediction_psi.labels(name, version).set(prediction["psi"])
        metrics.label_level.labels(name, version).set(STATUS_LEVEL[labels["status"]])
        if labels["ece"] is not None:
            metrics.calibration.labels(name, version).set(labels["ece"])
        metrics.records.labels(name, version).set(report["count"])
    metrics.refreshed.set(time.time())


async def refresh_periodically(runtime: Runtime) -> None:
    """The lifespan task: refresh now, then every `gauge_refresh_s` seconds."""
    while True:
        try:
            await refresh_gauges(runtime)
        except (StorageError, ServiceError, ExplainerError):
            logger.exception("refreshing drift gauges failed")
        await asyncio.sleep(runtime.settings.drift.gauge_refresh_s)
