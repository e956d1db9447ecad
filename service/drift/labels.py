"""Delayed ground truth (`POST /v1/labels`): label windows for label drift and calibration.

A label joins its logged decision by request ID and counts in the window of the
decision's event time (so calibration is per window of decisions), once per request ID
across replicas. Counters: `l:n` labels, `l:pos` positive labels (binary models),
`l:c{k}:n|y|p` labelled decisions, positives and summed scores per score decile,
`l:t` last label time.
"""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from service.drift.windows import OTHER_SEGMENT, DriftWindows
from service.errors import FieldError, ModelUnavailable, ModelUnknown, VersionUnknown
from service.model_loader import ModelLoader, ReadyModel
from service.validation import REQUEST_ID, parse_time
from storage.drift.records import ALL_RECORDS, BucketRef, WindowIncrement, WindowKey
from storage.protocols import RecordLog
from storage.records import StoredRecord

CALIBRATION_BINS = 10
_LOOKUP_CONCURRENCY = 50


@dataclass(frozen=True, slots=True)
class LabelOutcome:
    """The per-label answer."""

    request_id: str | None
    accepted: bool
    duplicate: bool = False
    errors: tuple[FieldError, ...] = ()

    def as_json(self) -> dict[str, object]:
        """Render the API answer of one label."""
        body: dict[str, object] = {"request_id": self.request_id,
                                   "status": "accepted" if self.accepted else "rejected"}
        if self.duplicate:
            body["duplicate"] = True
        if self.errors:
            body["errors"] = [{"field": e.field, "message": e.message} for e in self.errors]
        return body


@dataclass(frozen=True, slots=True)
class _Label:
    index: int
    request_id: str
    label: object
    labelled_ms: int


@dataclass(frozen=True, slots=True)
class _Joined:
    label: _Label
    record: StoredRecord
    ready: ReadyModel
    positive: bool | None


def _parse(index: int, raw: object, now_ms: int) -> _Label | LabelOutcome:
    at = f"labels[{index}]"
    if not isinstance(raw, dict):
        return LabelOutcome(None, False, errors=(FieldError(at, "expected an object"),))
    errors = [FieldError(f"{at}.{k}", "unknown field") for k in raw
              if k not in ("request_id", "label", "timestamp")]
    request_id = raw.get("request_id")
    if not isinstance(request_id, str) or not REQUEST_ID.match(request_id):
        errors.append(FieldError(f"{at}.request_id",
                                 "required: 1-128 characters of letters, digits and ._:-"))
    label = raw.get("label")
    if label is None or not isinstance(label, str | int | float | bool) or (
            isinstance(label, float) and not math.isfinite(label)):
        errors.append(FieldError(f"{at}.label", "required: a class label or a number"))
    labelled_ms = now_ms
    if raw.get("timestamp") is not None:
        parsed = parse_time(raw["timestamp"])
        if parsed is None:
            errors.append(FieldError(f"{at}.timestamp", "expected an ISO 8601 date-time"))
        else:
            labelled_ms = parsed
    rid = request_id if isinstance(request_id, str) else None
    if errors:
        return LabelOutcome(rid, False, errors=tuple(errors))
    assert isinstance(request_id, str)
    return _Label(index, request_id, label, labelled_ms)


def _canonical(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


async def _join(records: RecordLog, windows: DriftWindows, loader: ModelLoader,
                label: _Label) -> _Joined | LabelOutcome:
    at = f"labels[{label.index}]"
    record = await records.get_record(label.request_id)
    if record is None:
        return LabelOutcome(label.request_id, False, errors=(FieldError(
            f"{at}.request_id", "no logged record (never sent, or past retention)"),))
    try:
        ready: ReadyModel = await loader.get(record.model, record.version)
    except (ModelUnknown, VersionUnknown, ModelUnavailable) as exc:
        return LabelOutcome(label.request_id, False,
                            errors=(FieldError(f"{at}.request_id", str(exc)),))
    classes = [_canonical(c) for c in ready.manifest.classes]
    positive = None
    if ready.manifest.task != "regression":
        if _canonical(label.label) not in classes:
            return LabelOutcome(label.request_id, False, errors=(FieldError(
                f"{at}.label", f"not a class of {ready.label}"),))
        if len(classes) == 2:
            positive = _canonical(label.label) == classes[1]
    elif isinstance(label.label, bool) or not isinstance(label.label, int | float):
        return LabelOutcome(label.request_id, False, errors=(FieldError(
            f"{at}.label", "expected a number (regression model)"),))
    return _Joined(label, record, ready, positive)


async def ingest_labels(records: RecordLog, windows: DriftWindows, loader: ModelLoader,
                        raws: Sequence[object], *, now_ms: int) -> list[LabelOutcome]:
    """Join labels to their decisions, claim each once, and count them into windows."""
    outcomes: list[LabelOutcome | None] = [None] * len(raws)
    parsed: list[_Label] = []
    for index, raw in enumerate(raws):
        label = _parse(index, raw, now_ms)
        if isinstance(label, LabelOutcome):
            outcomes[index] = label
        else:
            parsed.append(label)
    joined: list[_Joined] = []
    for start in range(0, len(parsed), _LOOKUP_CONCURRENCY):
        chunk = parsed[start: start + _LOOKUP_CONCURRENCY]
        for label, result in zip(chunk, await asyncio.gather(
                *(_join(records, windows, loader, lb) for lb in chunk)), strict=True):
            if isinstance(result, LabelOutcome):
                outcomes[label.index] = result
            else:
                joined.append(result)
    by_model: defaultdict[str, list[_Joined]] = defaultdict(list)
    for item in joined:
        by_model[item.record.model].append(item)
    fresh: list[_Joined] = []
    for model, items in by_model.items():
        claims = await windows.store.claim_labels(model, [i.label.request_id for i in items])
        for item, claimed in zip(items, claims, strict=True):
            outcomes[item.label.index] = LabelOutcome(item.label.request_id, True,
                                                      duplicate=not claimed)
            if claimed:
                fresh.append(item)
    increments = await _increments(windows, fresh)
    await windows.store.add_window_counts(increments)
    windows.forget({(i.key.model, i.key.version) for i in increments})
    return [o for o in outcomes if o is not None]


async def _increments(windows: DriftWindows, items: list[_Joined]) -> list[WindowIncrement]:
    settings = windows.settings
    merged: dict[tuple[WindowKey, BucketRef], WindowIncrement] = {}
    for item in items:
        body = orjson.loads(item.record.body)
        score = body.get("prediction", {}).get("score")
        context = body.get("context") or {}
        segments = [ALL_RECORDS]
        for dimension in settings.segment_dimensions:
            value = context.get(dimension)
            if value is None or isinstance(value, dict | list):
                continue
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            admitted = await windows.admitted(item.record.model, dimension, {text})
            segments.append(f"{dimension}:{text if admitted else OTHER_SEGMENT}")
        for resolution in sorted({settings.bucket_s, settings.rollup_s}):
            size = resolution * 1000
            bucket = BucketRef(resolution, item.record.event_ms // size * size)
            for segment in segments:
                key = WindowKey(item.record.model, item.record.version, segment)
                inc = merged.setdefault((key, bucket), WindowIncrement(key, bucket))
                _count_label(inc, item, score)
    return list(merged.values())


def _count_label(inc: WindowIncrement, item: _Joined, score: object) -> None:
    counts, sums = inc.counts, inc.sums
    counts["l:n"] = counts.get("l:n", 0) + 1
    inc.maxima["l:t"] = max(inc.maxima.get("l:t", 0), item.label.labelled_ms)
    if item.positive is None:
        return
    counts["l:pos"] = counts.get("l:pos", 0) + int(item.positive)
    if isinstance(score, int | float) and not isinstance(score, bool) and 0 <= score <= 1:
        k = min(int(score * CALIBRATION_BINS), CALIBRATION_BINS - 1)
        counts[f"l:c{k}:n"] = counts.get(f"l:c{k}:n", 0) + 1
        counts[f"l:c{k}:y"] = counts.get(f"l:c{k}:y", 0) + int(item.positive)
        sums[f"l:c{k}:p"] = sums.get(f"l:c{k}:p", 0.0) + float(score)
