"""The plain-text work note that summarizes an incident export (masked values only)."""

from __future__ import annotations

from typing import Any

from service.incidents.delivery import Delivery

_FEATURES = 5


def work_note(delivery: Delivery) -> str:
    """A few lines an on-call engineer reads in the ticket; the bundle has the rest."""
    incident = delivery.incident
    summary = delivery.summary
    counts = summary.get("counts") or {}
    lines = [
        f"whylens summary of {incident.incident_id} (model {incident.model}, severity "
        f"{incident.severity}, {incident.state}): {incident.title}",
        f"Traces summarized: {counts.get('summarized', 0)}"
        f"{' (newest only)' if counts.get('truncated') else ''}; mismatched predictions: "
        f"{counts.get('mismatches', 0)}; by reason: {_pairs(counts.get('by_reason'))}",
        f"Versions: {_pairs(summary.get('versions'))}; cohorts: {_pairs(summary.get('cohorts'))}",
    ]
    moved = summary.get("moved_most") or []
    if moved:
        lines.append("Features that moved most (mean |attribution| vs baseline): " + ", ".join(
            f"{m['feature']}@{m['version']} {m['change']:+.3g}" for m in moved[:_FEATURES]))
    canary = summary.get("canary_comparison")
    if canary and canary.get("features"):
        lines.append(
            f"Canary {canary['canary']} vs production {canary['production']} over "
            f"{canary['compared']} canary traces, largest mean |difference|: " + ", ".join(
                f"{f['feature']} {f['mean_abs_difference']:.3g}"
                for f in canary["features"][:_FEATURES]))
    drifting = sorted({name for block in (summary.get("drift") or {}).values()
                       if isinstance(block, dict) for name in block.get("drifting") or []})
    if drifting:
        lines.append("Drifting in the incident window: " + ", ".join(drifting))
    lines.append(f"Bundle attached: {delivery.file_name} (sha256 {delivery.digest})")
    return "\n".join(lines)


def _pairs(counts: Any) -> str:
    if not isinstance(counts, dict) or not counts:
        return "none"
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
