"""Explain requests grouped by model version (in a thread) and store their traces."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import replace

from explainers.errors import ExplainerError
from service.incidents.linking import link_incident_mode_traces
from service.model_loader import ReadyModel
from service.retention import retention_for
from service.runtime import Runtime
from service.trace_builder import TraceRequest, build_traces
from storage.errors import StoreUnavailable
from storage.records import StoredTrace

logger = logging.getLogger(__name__)


async def explain_traces(runtime: Runtime, requests: list[tuple[ReadyModel, TraceRequest]],
                         *, strict: bool) -> list[StoredTrace]:
    """Build the traces, one thread call per model version; nothing is stored.

    With `strict`, an explainer failure propagates (an explicit explain call); otherwise
    it is logged and counted, and the record stays logged for a later on-demand explain.
    """
    groups: dict[tuple[str, str], list[TraceRequest]] = defaultdict(list)
    models: dict[tuple[str, str], ReadyModel] = {}
    for ready, request in requests:
        key = (ready.manifest.name, ready.manifest.version)
        groups[key].append(request)
        models[key] = ready
    traces: list[StoredTrace] = []
    for key, group in groups.items():
        ready = models[key]
        started = time.perf_counter()
        try:
            built = await asyncio.to_thread(build_traces, ready, group, runtime.trace_options)
        except ExplainerError:
            runtime.metrics.explain_failures.labels(key[0]).inc(len(group))
            if strict:
                raise
            logger.exception("explaining %d records of %s failed", len(group), ready.label)
            continue
        method = ready.explainer.method
        runtime.metrics.explain_seconds.labels(method).observe(time.perf_counter() - started)
        runtime.metrics.explanations.labels(method).inc(len(group))
        traces_s = retention_for(runtime.settings.retention, ready.manifest).traces_s
        traces.extend(replace(trace, ttl_s=traces_s) for trace in built)
    return traces


async def store_traces(runtime: Runtime, traces: list[StoredTrace]) -> dict[str, bytes]:
    """Write traces in one call, link incident-mode ones; return the bodies by request ID."""
    if traces:
        try:
            await runtime.traces.put_traces(traces)
        except StoreUnavailable:
            runtime.metrics.store_errors.labels(runtime.traces.backend).inc()
            raise
        # Linked traces are held past retention and listed on their incidents.
        await link_incident_mode_traces(runtime, {t.request_id: t.incidents for t in traces
                                                  if t.incidents})
    return {t.request_id: t.body for t in traces}


async def explain_and_store(runtime: Runtime, requests: list[tuple[ReadyModel, TraceRequest]],
                            *, strict: bool) -> dict[str, bytes]:
    """Explain grouped by model version (one batch call each) and store the traces."""
    return await store_traces(runtime, await explain_traces(runtime, requests, strict=strict))
