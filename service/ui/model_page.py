"""The model page: versions, identity, drift heat map, score distribution, sampling reasons."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from explainers.errors import ExplainerError
from service.drift.queries import TRAINING, model_drift, parse_segment, parse_window
from service.drift.references import window_numeric
from service.drift.windows import WindowSpan, trailing_span
from service.errors import FieldError, ServiceError
from service.model_loader import ReadyModel
from service.runtime import Runtime
from service.trace_builder import iso_ms
from service.ui.charts import HeatCell, heatmap_svg, paired_bars_svg, strips_svg
from service.ui.incident_source import open_incidents
from service.ui.status import look, worst
from storage.drift.records import ALL_RECORDS, WindowKey
from storage.errors import StorageError
from storage.records import StoredTrace, TraceQuery

SEARCH_PAGE = 500
SEARCH_CAP = 5000
"""Traces read for the sampling-reason chart; beyond this the chart says it is partial."""
RECENT = 15
PREDICTION_ROW = "prediction (score)"


@dataclass(frozen=True, slots=True)
class ModelAsk:
    """What the model page was asked for."""

    name: str
    version: str | None
    window: str
    windows: int
    segment: str | None = None
    """`<dimension>:<value>` or a bare `context.segment` value; None: all records."""


async def model_view(runtime: Runtime, ask: ModelAsk) -> dict[str, Any] | None:
    """The template context of the model page, or None when the model is unknown."""
    catalog = runtime.loader.catalog
    if ask.name not in await catalog.list_models():
        return None
    aliases = await catalog.aliases(ask.name)
    loaded = {(m.manifest.name, m.manifest.version): m.manifest_sha256
              for m in runtime.loader.loaded()}
    versions = []
    for version in await catalog.list_versions(ask.name):
        manifest = await catalog.read_manifest(ask.name, version)
        versions.append({
            "manifest": manifest, "sha256": loaded.get((ask.name, version)),
            "aliases": sorted(a for a, v in aliases.items() if v == version)})
    notices: list[str] = []
    window = ask.window
    seconds = parse_window(window, retention_s=runtime.settings.drift.retention_s)
    if isinstance(seconds, FieldError):
        notices.append(f"window {window!r}: {seconds.message}; showing 1h")
        window, seconds = "1h", 3600
    segment = parse_segment(ask.segment, runtime.settings.drift.segment_dimensions)
    if isinstance(segment, FieldError):
        notices.append(f"segment {ask.segment!r}: {segment.message}; showing all records")
        segment = ALL_RECORDS
    view: dict[str, Any] = {
        "name": ask.name, "versions": versions, "aliases": aliases, "notices": notices,
        "window": window, "windows": ask.windows, "segment": segment or None,
        "segment_text": ask.segment or "",
        "dimensions": runtime.settings.drift.segment_dimensions,
        "heatmap": None, "heat_rows": [], "heat_columns": [], "score": None,
        "reasons": None, "recent": [], "selected": None,
        "incidents": await open_incidents(runtime, model=ask.name),
    }
    try:
        ready = await runtime.loader.get(ask.name, ask.version)
    except (ServiceError, StorageError, ExplainerError) as exc:
        notices.append(f"version {ask.version or 'production'} cannot be shown: {exc}")
        return view
    view["selected"] = ready.manifest.version
    now_ms = time.time_ns() // 1_000_000
    bucket_s = runtime.settings.drift.bucket_s
    spans = [trailing_span(now_ms - k * seconds * 1000, seconds, bucket_s)
             for k in reversed(range(ask.windows))]
    await _add_heatmap(runtime, ready, spans, view)
    await _add_score(runtime, ready, spans[-1], view)
    await _add_reasons(runtime, ask.name, spans, view)
    return view


def _of_segment(view: dict[str, Any]) -> str:
    return f", segment {view['segment']}," if view["segment"] else ""


def _clock(epoch_ms: int) -> str:
    return time.strftime("%H:%M", time.gmtime(epoch_ms / 1000))


async def _add_heatmap(runtime: Runtime, ready: ReadyModel, spans: list[WindowSpan],
                       view: dict[str, Any]) -> None:
    reports = []
    for span in spans:
        try:
            reports.append(await model_drift(
                runtime, ready.manifest.name, version=ready.manifest.version,
                window=view["window"], until=iso_ms(span.end_ms), segment=view["segment"],
                baseline=TRAINING))
        except (ServiceError, StorageError) as exc:
            view["notices"].append(f"drift windows unavailable: {exc}")
            return
    names = [f.name for f in ready.manifest.features]
    grid: dict[str, list[HeatCell]] = {}
    for name in [*names, PREDICTION_ROW]:
        cells = []
        for report in reports:
            entry = report.get("prediction") if name == PREDICTION_ROW \
                else (report.get("features") or {}).get(name)
            entry = entry if isinstance(entry, dict) else {}
            psi = entry.get("psi")
            cells.append(HeatCell(look(entry.get("status")),
                                  float(psi) if isinstance(psi, int | float) else None))
        grid[name] = cells
    # Drifting features first: the page answers "is the input moving" at a glance.
    order = sorted(names, key=lambda n: (-worst(c.status.key for c in grid[n]).rank,
                                         -max((c.psi or 0.0) for c in grid[n]), n))
    rows = [PREDICTION_ROW, *order]
    columns = [_clock(span.end_ms) for span in spans]
    view["heat_columns"] = [
        {"label": columns[i], "start": r.get("window", {}).get("start"),
         "end": r.get("window", {}).get("end"), "count": r.get("count")}
        for i, r in enumerate(reports)]
    view["heat_rows"] = [(row, grid[row]) for row in rows]
    view["heatmap"] = heatmap_svg(
        rows, columns, [grid[row] for row in rows],
        label=f"Drift status per feature (rows) and {view['window']} window (columns, by end "
              f"time UTC) of {ready.label}{_of_segment(view)} against training; each cell "
              f"shows a symbol and PSI")


async def _add_score(runtime: Runtime, ready: ReadyModel, span: WindowSpan,
                     view: dict[str, Any]) -> None:
    """Training score histogram (manifest) against the latest window's logged scores."""
    baseline = ready.manifest.baseline.score
    edges = baseline.edges
    if len(edges) < 2:
        return
    layout = runtime.drift.layout(ready)
    try:
        counts = await runtime.drift.read(
            WindowKey(ready.manifest.name, ready.manifest.version, view["segment"] or ALL_RECORDS),
            span)
    except StorageError as exc:
        view["notices"].append(f"live score window unavailable: {exc}")
        counts = {}
    live = window_numeric(layout.score, counts).psi_counts(layout.score.groups)
    total = float(live.sum())
    rows = [f"{edges[i]:.3g} – {edges[i + 1]:.3g}" for i in range(len(edges) - 1)]
    current: list[float | None] = [float(c) / total if total else None for c in live]
    current = (current + [None] * len(rows))[:len(rows)]
    reference: list[float | None] = list(baseline.proportions)
    view["score"] = {
        "rows": rows, "training": reference, "live": current, "count": int(total),
        "chart": paired_bars_svg(
            rows, reference, current, names=("training", f"last {view['window']}"),
            percent=True, label=f"Score distribution of {ready.label}: training share per "
                                f"score bin against the last {view['window']} "
                                f"({int(total)} scored records)"),
    }


async def _search(runtime: Runtime, model: str, since_ms: int,
                  until_ms: int) -> tuple[list[StoredTrace], bool]:
    found: list[StoredTrace] = []
    cursor = None
    while len(found) < SEARCH_CAP:
        page = await runtime.traces.search_traces(TraceQuery(
            model=model, since_ms=since_ms, until_ms=until_ms, limit=SEARCH_PAGE,
            cursor=cursor))
        found += page.items
        cursor = page.next_cursor
        if cursor is None:
            return found, False
    return found, True


async def _add_reasons(runtime: Runtime, name: str, spans: list[WindowSpan],
                       view: dict[str, Any]) -> None:
    try:
        traces, partial = await _search(runtime, name, spans[0].start_ms, spans[-1].end_ms)
    except StorageError as exc:
        view["notices"].append(f"trace search unavailable: {exc}")
        return
    view["recent"] = traces[:RECENT]
    counts: dict[str, list[int]] = {}
    for stored in traces:
        column = next((i for i, span in enumerate(spans)
                       if span.start_ms <= stored.event_ms < span.end_ms), None)
        if column is not None:
            counts.setdefault(stored.reason or "unknown", [0] * len(spans))[column] += 1
    rows = sorted(counts, key=lambda r: (-sum(counts[r]), r))
    columns = [_clock(span.end_ms) for span in spans]
    view["reasons"] = {
        "rows": [(row, counts[row]) for row in rows], "columns": columns,
        "partial": partial, "total": sum(sum(c) for c in counts.values()),
        "chart": strips_svg(rows, columns, [counts[r] for r in rows],
                            label=f"Explained decisions of {name} per sampling reason (rows) "
                                  f"and {view['window']} window (bars)") if rows else None,
    }
