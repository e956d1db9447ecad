"""Compact binary values for traces and records kept as single Redis strings.

A fixed header (format, kind, times, flags, field count) is followed by the byte length
of every variable field and then the fields themselves. Bodies stay raw bytes: no base64
or JSON escaping, so a few-KB body costs a few KB plus about 40 bytes.
"""

from __future__ import annotations

import struct

from storage.records import StoredRecord, StoredTrace

# Bumped with any change of layout; unpacking refuses formats it does not know.
_FORMAT = 1
_TRACE = ord("T")
_RECORD = ord("R")
_HAS_REASON = 1
_SAMPLED = 2

# format, kind, event_ms, received_ms (0 for traces), flags, number of variable fields
_HEAD = struct.Struct(">BBqqBH")


class PackingError(ValueError):
    """A stored value is not in a format this code writes."""


def pack_trace(trace: StoredTrace) -> bytes:
    """Return the stored value of a trace."""
    flags = _HAS_REASON if trace.reason is not None else 0
    fields = [trace.request_id.encode(), trace.model.encode(), trace.version.encode(),
              (trace.reason or "").encode(), trace.body,
              *(incident.encode() for incident in trace.incidents)]
    return _pack(_TRACE, trace.event_ms, 0, flags, fields)


def unpack_trace(value: bytes) -> StoredTrace:
    """Return the trace of a value made by `pack_trace`.

    Raises:
        PackingError: the value is not a packed trace.
    """
    event_ms, _, flags, fields = _unpack(value, _TRACE)
    if len(fields) < 5:
        raise PackingError("trace value has too few fields")
    request_id, model, version, reason, body, *incidents = fields
    return StoredTrace(
        request_id=_decode_text(request_id), model=_decode_text(model),
        version=_decode_text(version), event_ms=event_ms,
        reason=_decode_text(reason) if flags & _HAS_REASON else None,
        body=body, incidents=tuple(_decode_text(incident) for incident in incidents),
    )


def pack_record(record: StoredRecord, *, with_sealed: bool = True) -> bytes:
    """Return the stored value of a record (`with_sealed=False`: sealed inputs left out)."""
    flags = (_HAS_REASON if record.reason is not None else 0) | (
        _SAMPLED if record.sampled else 0)
    fields = [record.request_id.encode(), record.model.encode(), record.version.encode(),
              (record.reason or "").encode(), record.body,
              record.sealed_inputs if with_sealed else b""]
    return _pack(_RECORD, record.event_ms, record.received_ms, flags, fields)


def unpack_record(value: bytes) -> StoredRecord:
    """Return the record of a value made by `pack_record`.

    Raises:
        PackingError: the value is not a packed record.
    """
    event_ms, received_ms, flags, fields = _unpack(value, _RECORD)
    if len(fields) != 6:
        raise PackingError("record value has the wrong number of fields")
    request_id, model, version, reason, body, sealed_inputs = fields
    return StoredRecord(
        request_id=_decode_text(request_id), model=_decode_text(model),
        version=_decode_text(version), event_ms=event_ms, received_ms=received_ms,
        sampled=bool(flags & _SAMPLED),
        reason=_decode_text(reason) if flags & _HAS_REASON else None, body=body,
        sealed_inputs=sealed_inputs,
    )


def _pack(kind: int, event_ms: int, received_ms: int, flags: int,
          fields: list[bytes]) -> bytes:
    head = _HEAD.pack(_FORMAT, kind, event_ms, received_ms, flags, len(fields))
    lengths = struct.pack(f">{len(fields)}I", *(len(field) for field in fields))
    return b"".join((head, lengths, *fields))


def _unpack(value: bytes, kind: int) -> tuple[int, int, int, list[bytes]]:
    try:
        fmt, found_kind, event_ms, received_ms, flags, count = _HEAD.unpack_from(value)
        if fmt != _FORMAT or found_kind != kind:
            raise PackingError(f"unknown value format {fmt}/{found_kind}")
        lengths = struct.unpack_from(f">{count}I", value, _HEAD.size)
    except struct.error as exc:
        raise PackingError("truncated value") from exc
    offset = _HEAD.size + 4 * count
    if offset + sum(lengths) != len(value):
        raise PackingError("value length does not match its header")
    fields: list[bytes] = []
    for length in lengths:
        fields.append(value[offset: offset + length])
        offset += length
    return event_ms, received_ms, flags, fields


def _decode_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PackingError("text field is not UTF-8") from exc
