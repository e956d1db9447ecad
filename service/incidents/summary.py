"""The incident summary: what its traces say, against the baseline and across versions."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from dataclasses import replace
from typing import Any

import numpy as np
import orjson

from explainers.errors import ExplainerError
from service.compare import aggregate_differences, explain_sides
from service.errors import InputsExpired, ServiceError
from service.incidents.drift_window import incident_drift
from service.ingest import replay_envelope
from service.model_loader import ReadyModel
from service.runtime import Runtime
from service.trace_builder import iso_ms
from storage.errors import StorageError
from storage.incidents.records import StoredIncident
from storage.records import TraceQuery

logger = logging.getLogger(__name__)

MOVED_MOST = 10
_PAGE = 500


async def incident_traces(runtime: Runtime, incident_id: str,
                          limit: int) -> tuple[list[dict[str, Any]], bool]:
    """The newest `limit` linked traces as documents, and whether more exist."""
    documents: list[dict[str, Any]] = []
    query = TraceQuery(incident=incident_id, limit=min(_PAGE, limit))
    while True:
        page = await runtime.traces.search_traces(query)
        documents += [orjson.loads(t.body) for t in page.items]
        if page.next_cursor is None:
            return documents, False
        if len(documents) >= limit:
            return documents[:limit], True
        query = replace(query, cursor=page.next_cursor,
                        limit=min(_PAGE, limit - len(documents)))


async def summarize(runtime: Runtime, incident: StoredIncident) -> dict[str, Any]:
    """Counts, attribution against baseline, drift, version/cohort mix, canary diffs."""
    settings = runtime.settings.incidents
    documents, truncated = await incident_traces(runtime, incident.incident_id,
                                                 settings.summary_traces)
    attached = await runtime.incidents.store.attached_requests(incident.incident_id, limit=1,
                                                               cursor=None)
    versions = Counter(str((d.get("model") or {}).get("version")) for d in documents)
    attribution = await _attribution(runtime, incident, documents)
    return {
        "window": {"start": iso_ms(incident.opened_ms),
                   "end": None if incident.closed_ms is None else iso_ms(incident.closed_ms)},
        "counts": {
            "summarized": len(documents), "truncated": truncated, "attached": attached.total,
            "by_reason": dict(Counter(str((d.get("sampling") or {}).get("reason"))
                                      for d in documents)),
            "mismatches": sum(1 for d in documents
                              if (d.get("prediction") or {}).get("mismatch") is True),
        },
        "versions": dict(versions),
        "cohorts": dict(Counter(str((d.get("context") or {}).get("cohort") or "(none)")
                                for d in documents)),
        "attribution": attribution,
        "moved_most": _moved_most(attribution),
        "drift": await incident_drift(runtime, incident, sorted(versions)),
        "canary_comparison": await canary_comparison(runtime, incident, documents),
    }


async def _attribution(runtime: Runtime, incident: StoredIncident,
                       documents: list[dict[str, Any]]) -> dict[str, Any]:
    by_version: defaultdict[str, list[dict[str, float]]] = defaultdict(list)
    spaces: dict[str, str] = {}
    for document in documents:
        explanation = document.get("explanation") or {}
        attributions = explanation.get("attributions")
        if isinstance(attributions, dict):
            version = str((document.get("model") or {}).get("version"))
            by_version[version].append(attributions)
            spaces[version] = str(explanation.get("output_space"))
    out: dict[str, Any] = {}
    for version, rows in sorted(by_version.items()):
        names = list(rows[0])
        means = {n: float(np.mean([abs(r.get(n) or 0.0) for r in rows])) for n in names}
        baseline = await baseline_attribution(runtime, incident.model, version)
        features = {}
        for name in names:
            base = None if baseline is None else baseline.get(name)
            features[name] = {"mean_abs": means[name], "baseline_mean_abs": base,
                              "change": None if base is None else means[name] - base}
        out[version] = {"output_space": spaces[version], "traces": len(rows),
                        "features": features}
    return out


def _moved_most(attribution: dict[str, Any]) -> list[dict[str, Any]]:
    moved = [{"feature": name, "version": version, **entry}
             for version, block in attribution.items()
             for name, entry in block["features"].items() if entry["change"] is not None]
    moved.sort(key=lambda e: -abs(e["change"]))
    return moved[:MOVED_MOST]


async def baseline_attribution(runtime: Runtime, model: str,
                               version: str) -> dict[str, float] | None:
    """Mean |attribution| per feature over the version's background sample (cached)."""
    try:
        ready = await runtime.loader.get(model, version)
    except (ServiceError, StorageError) as exc:
        logger.warning("no baseline attribution for %s@%s: %s", model, version, exc)
        return None
    key = (ready.manifest.name, ready.manifest.version, ready.manifest_sha256)
    cache = runtime.incidents.baselines
    cached = cache.get(key)
    if cached is not None:
        return cached

    def explain(rows: Any) -> tuple[tuple[str, ...], Any]:
        explanation = ready.explainer.explain(rows)
        return explanation.feature_names, explanation.values

    try:
        return await asyncio.to_thread(cache.compute, key, ready.explainer.method,
                                       ready.background, explain)
    except ExplainerError as exc:
        logger.warning("baseline attribution of %s failed: %s", ready.label, exc)
        return None


async def canary_comparison(runtime: Runtime, incident: StoredIncident,
                            documents: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Production vs canary attributions of the incident's canary traces, per feature.

    Each canary trace's record is re-explained under the production version from its
    retained inputs; the per-request differences are averaged. None when the model has
    no distinct production and canary aliases.
    """
    try:
        aliases = await runtime.loader.catalog.aliases(incident.model)
    except StorageError:
        return None
    production, canary = aliases.get("production"), aliases.get("canary")
    if production is None or canary is None or production == canary:
        return None
    wanted = [d["request_id"] for d in documents
              if str((d.get("model") or {}).get("version")) == canary]
    wanted = wanted[:runtime.settings.incidents.compare_traces]
    rows = []
    for request_id in wanted:
        record = await runtime.records.get_record(request_id)
        if record is None:
            continue
        try:
            rows.append((await replay_envelope(runtime, record)).features)
        except InputsExpired:
            continue
    result: dict[str, Any] = {"production": production, "canary": canary,
                              "canary_traces": len(wanted), "compared": len(rows)}
    if not rows:
        return {**result, "output_difference_mean": None, "features": []}
    prod_ready: ReadyModel = await runtime.loader.get(incident.model, production)
    canary_ready: ReadyModel = await runtime.loader.get(incident.model, canary)
    a, b = await asyncio.to_thread(explain_sides, ("production", prod_ready),
                                   ("canary", canary_ready), rows)
    return {**result,
            "output_difference_mean": float(np.mean(b.explanation.outputs
                                                    - a.explanation.outputs)),
            "features": aggregate_differences(a, b)}
