"""`GET /v1/models/{name}/drift`: parse the window, pick the reference, build the report."""

from __future__ import annotations

import re
import time
from typing import Any

from service.drift.references import Reference, TrainingReference, WindowReference
from service.drift.report import ReportContext, build_report
from service.drift.windows import WindowSpan, resolve_thresholds, trailing_span
from service.errors import FieldError, RecordInvalid, VersionUnknown
from service.model_loader import ReadyModel
from service.runtime import Runtime
from service.validation import parse_time
from storage.drift.records import ALL_RECORDS, WindowKey

_WINDOW = re.compile(r"^([1-9][0-9]{0,6})([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
LATEST_MS = 253_370_764_800_000  # 9999-01-01: bucket ends must still be valid dates
TRAINING = "training"
PREVIOUS_WINDOW = "previous_window"


def parse_window(text: str, *, retention_s: int) -> int | FieldError:
    """Seconds of a window such as `90s`, `15m`, `1h`, `7d` (at most the retention)."""
    match = _WINDOW.match(text.strip())
    if match is None:
        return FieldError("window", "expected a positive number and a unit s, m, h or d "
                                    "(e.g. 1h)")
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds > retention_s:
        return FieldError("window", f"longer than the {retention_s} s that windows are kept")
    return seconds


def parse_segment(text: str | None, dimensions: list[str]) -> str | FieldError:
    """`region:eu-west-1`, or a bare value meaning `segment:<value>`; none = all records."""
    if text is None or text == "":
        return ALL_RECORDS
    dimension, sep, value = text.partition(":")
    if not sep:
        dimension, value = "segment", text
    if dimension not in dimensions or not value:
        return FieldError("segment", f"expected <dimension>:<value> with a dimension among "
                                     f"{', '.join(dimensions)}, or a context.segment value")
    return f"{dimension}:{value}"


async def model_drift(runtime: Runtime, name: str, *, version: str | None, window: str,
                      until: str | None, segment: str | None,
                      baseline: str) -> dict[str, Any]:
    """The drift answer of DESIGN.md for one model version and window."""
    settings = runtime.settings.drift
    errors: list[FieldError] = []
    seconds = parse_window(window, retention_s=settings.retention_s)
    until_ms = time.time_ns() // 1_000_000 if until is None else parse_time(until)
    if until_ms is None:
        errors.append(FieldError("until", "expected an ISO 8601 date-time"))
    if until_ms is not None and isinstance(seconds, int) and not (
            seconds * 1000 <= until_ms <= LATEST_MS):
        errors.append(FieldError("until", "out of range (1970 to 9999, minus the window)"))
    segment_name = parse_segment(segment, settings.segment_dimensions)
    errors += [e for e in (seconds, segment_name) if isinstance(e, FieldError)]
    if errors:
        raise RecordInvalid(errors)
    assert isinstance(seconds, int) and isinstance(segment_name, str) and until_ms is not None
    ready = await runtime.loader.get(name, version)
    span = trailing_span(until_ms, seconds, settings.bucket_s)
    report = await window_report(runtime, ready, span, segment_name, baseline)
    return {"model": ready.manifest.name, "version": ready.manifest.version,
            "window": report.pop("window"), "baseline": report.pop("baseline"),
            "segment": segment_name or None, **report}


async def window_report(runtime: Runtime, ready: ReadyModel, span: WindowSpan, segment: str,
                        baseline: str) -> dict[str, Any]:
    """Report of one window of a version against `training`, `previous_window` or a version."""
    windows = runtime.drift
    layout = windows.layout(ready)
    key = WindowKey(ready.manifest.name, ready.manifest.version, segment)
    counts = await windows.read(key, span)
    reference: Reference
    if baseline == TRAINING:
        reference = TrainingReference(layout)
    elif baseline == PREVIOUS_WINDOW:
        reference = WindowReference(PREVIOUS_WINDOW, layout, layout,
                                    await windows.read(key, span.previous()))
    else:
        try:
            other = await runtime.loader.get(ready.manifest.name, baseline)
        except VersionUnknown as exc:
            raise RecordInvalid([FieldError(
                "baseline", f"expected {TRAINING}, {PREVIOUS_WINDOW} or a version or alias "
                            f"of {ready.manifest.name}: {exc}")]) from exc
        other_key = WindowKey(other.manifest.name, other.manifest.version, segment)
        reference = WindowReference(other.manifest.version, layout, windows.layout(other),
                                    await windows.read(other_key, span))
    context = ReportContext(layout, reference, resolve_thresholds(ready.manifest,
                                                                  runtime.settings.drift),
                            span, ready.masker.masked_features)
    return build_report(context, counts)
