"""The incident page: state, counts, attribution shift, drift, canary differences, traces.

Built from the incident document exactly as `GET /v1/incidents/{id}` serves it; every
section is optional so the page survives changes in what the summary carries.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from service.runtime import Runtime
from service.ui.charts import HeatCell, heatmap_svg, paired_bars_svg
from service.ui.incident_source import incident_summary
from service.ui.status import look

SHIFT_FEATURES = 15
"""Features shown in the attribution-shift chart (largest change first)."""


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


async def incident_view(runtime: Runtime, incident_id: str, *,
                        cursor: str | None) -> dict[str, Any] | None:
    """The template context of the incident page, or None when the incident is unknown."""
    document = await incident_summary(runtime, incident_id, cursor=cursor)
    if document is None:
        return None
    incident = _dict(document.get("incident")) or document
    summary = _dict(document.get("summary"))
    return {
        "incident": incident,
        "incident_id": str(incident.get("id", incident_id)),
        "summary": summary,
        "counts": _dict(summary.get("counts")),
        "versions": _dict(summary.get("versions")),
        "cohorts": _dict(summary.get("cohorts")),
        "shifts": _shifts(_dict(summary.get("attribution"))),
        "moved_most": [m for m in _list(summary.get("moved_most")) if isinstance(m, dict)],
        "drift": _drift(_dict(summary.get("drift"))),
        "canary": _dict(summary.get("canary_comparison")) or None,
        "traces": [t for t in _list(document.get("traces")) if isinstance(t, dict)],
        "next_cursor": document.get("next_cursor"),
        "exports": _exports(document),
        "backfills": [b for b in _list(document.get("backfills")) if isinstance(b, dict)],
        "first_page": cursor is None,
    }


def _shifts(attribution: dict[str, Any]) -> list[dict[str, Any]]:
    """Per version: mean |attribution| of the incident's traces against the baseline's."""
    out = []
    for version, block in sorted(attribution.items()):
        features = _dict(_dict(block).get("features"))
        rows = sorted(features.items(), key=lambda item: (
            -abs(_number(_dict(item[1]).get("change")) or 0.0),
            -(_number(_dict(item[1]).get("mean_abs")) or 0.0)))[:SHIFT_FEATURES]
        names = [name for name, _ in rows]
        incident = [_number(_dict(entry).get("mean_abs")) for _, entry in rows]
        baseline = [_number(_dict(entry).get("baseline_mean_abs")) for _, entry in rows]
        chart: Markup | None = None
        if names:
            chart = paired_bars_svg(
                names, baseline, incident, names=("baseline", "incident"), percent=False,
                label=f"Mean |attribution| per feature of version {version}: baseline "
                      f"(outlined) against the incident's traces (solid), largest change first")
        out.append({"version": version, "chart": chart,
                    "output_space": _dict(block).get("output_space"),
                    "traces": _dict(block).get("traces"),
                    "rows": [(n, b, i, _number(_dict(e).get("change")))
                             for n, b, i, (_, e) in zip(names, baseline, incident, rows,
                                                        strict=True)]})
    return out


def _drift(drift: dict[str, Any]) -> dict[str, Any] | None:
    """Feature × version grid of drift in the incident window."""
    versions = sorted(drift)
    if not versions:
        return None
    names: list[str] = []
    for version in versions:
        names += [n for n in _dict(_dict(drift[version]).get("features")) if n not in names]
    cells = []
    for name in names:
        row = []
        for version in versions:
            entry = _dict(_dict(_dict(drift[version]).get("features")).get(name))
            row.append(HeatCell(look(entry.get("status")), _number(entry.get("psi"))))
        cells.append(row)
    columns = [f"v{v}" for v in versions]
    return {
        "versions": [(v, _dict(drift[v])) for v in versions],
        "rows": list(zip(names, cells, strict=True)),
        "columns": columns,
        "chart": heatmap_svg(names, columns, cells,
                             label="Drift per feature (rows) and version (columns) over the "
                                   "incident window against training") if names else None,
    }


def _exports(document: dict[str, Any]) -> list[dict[str, Any]]:
    raw = document.get("exports", document.get("export"))
    if isinstance(raw, dict):
        raw = [raw]
    return [e for e in _list(raw) if isinstance(e, dict)]
