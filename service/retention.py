"""How long one model's traces, prediction log, sealed inputs and archive are kept.

Precedence per field: `WHYLENS_RETENTION__MODELS` for the model name, then the
manifest's `retention` section, then the service-wide settings. Sealed inputs never
outlive the log entry they belong to.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from service.errors import FieldError, RecordInvalid
from service.settings import RetentionSettings
from storage.manifest import Manifest, RetentionOverrides


@dataclass(frozen=True, slots=True)
class Retention:
    """Resolved retention of one model version, in seconds."""

    traces_s: int
    records_s: int
    inputs_s: int
    incident_traces_s: int
    archive_traces_s: int
    archive_records_s: int


def retention_for(settings: RetentionSettings, manifest: Manifest | None, *,
                  model: str | None = None) -> Retention:
    """Resolve the retention of a model version (or of a model whose manifest is unknown)."""
    name = manifest.name if manifest is not None else model
    layers = [None if name is None else settings.models.get(name),
              None if manifest is None else manifest.retention]

    def pick(field: str, default: int) -> int:
        for layer in layers:
            value = None if layer is None else getattr(layer, field)
            if value is not None:
                return int(value)
        return default

    records_s = pick("records_s", settings.records_s)
    inputs_s = pick("inputs_s", settings.inputs_s or records_s)
    return Retention(traces_s=pick("traces_s", settings.traces_s), records_s=records_s,
                     inputs_s=min(inputs_s, records_s),
                     incident_traces_s=pick("incident_traces_s", settings.incident_traces_s),
                     archive_traces_s=pick("archive_traces_s", settings.archive_traces_s),
                     archive_records_s=pick("archive_records_s", settings.archive_records_s))


def read_retention_overrides(path: Path | None) -> RetentionOverrides | None:
    """Read the optional `retention:` section of FEATURES.yaml (`traces_s`, ...)."""
    if path is None:
        return None
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    section = doc.get("retention") if isinstance(doc, dict) else None
    if section is None:
        return None
    if not isinstance(section, dict):
        raise RecordInvalid([FieldError("retention", "expected a mapping of *_s durations")])
    try:
        return RetentionOverrides(**section)
    except ValidationError as exc:
        raise RecordInvalid([FieldError(f"retention.{'.'.join(str(p) for p in e['loc'])}",
                                        e["msg"]) for e in exc.errors()]) from exc
