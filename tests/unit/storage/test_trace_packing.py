from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.records import StoredRecord, StoredTrace
from storage.traces.packing import (
    PackingError,
    pack_record,
    pack_trace,
    unpack_record,
    unpack_trace,
)

names = st.text(max_size=40)
times = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@given(names, names, names, st.none() | names, times, st.binary(max_size=4096),
       st.lists(names, max_size=4).map(tuple))
def test_trace_round_trips(request_id: str, model: str, version: str, reason: str | None,
                           event_ms: int, body: bytes, incidents: tuple[str, ...]) -> None:
    trace = StoredTrace(request_id, model, version, reason, event_ms, body, incidents)
    assert unpack_trace(pack_trace(trace)) == trace


@given(names, names, times, times, st.booleans(), st.none() | names, st.binary(),
       st.binary())
def test_record_round_trips(request_id: str, model: str, event_ms: int, received_ms: int,
                            sampled: bool, reason: str | None, body: bytes,
                            sealed: bytes) -> None:
    record = StoredRecord(request_id, model, "3", event_ms, received_ms, sampled, reason,
                          body, sealed)
    assert unpack_record(pack_record(record)) == record


def test_packed_trace_costs_little_more_than_its_body() -> None:
    trace = StoredTrace("r-1", "credit", "3", "sampled", 1, b"x" * 3000, ("INC1",))
    assert len(pack_trace(trace)) < 3000 + 80


def test_values_of_another_kind_or_truncated_are_refused() -> None:
    trace = pack_trace(StoredTrace("r-1", "credit", "3", None, 1, b"body"))
    record = pack_record(StoredRecord("r-1", "credit", "3", 1, 2, True, None, b"b", b"s"))
    for bad in (b"", b"junk", trace[:-1], trace + b"x", b"\x09" + trace[1:]):
        with pytest.raises(PackingError):
            unpack_trace(bad)
    with pytest.raises(PackingError):
        unpack_record(trace)
    with pytest.raises(PackingError):
        unpack_trace(record)
