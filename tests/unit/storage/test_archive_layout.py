"""Archive objects: Hive-style keys, valid JSON-lines gzip, deterministic batch names."""

from __future__ import annotations

import gzip
import io
import random
from datetime import UTC, datetime

import orjson
import pandas as pd
import pytest

from storage.archive.layout import (
    ArchiveLine,
    Partition,
    batch_name,
    build_objects,
    location,
    parse_location,
    partition_expiry_ms,
    partition_of,
    read_line,
)


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def _line(kind: str, rid: str, model: str, when: str) -> ArchiveLine:
    body = orjson.dumps({"request_id": rid, "model": {"name": model}, "when": when})
    return ArchiveLine(kind, rid, model, _ms(when), body)  # type: ignore[arg-type]


def test_lines_are_grouped_by_kind_event_date_and_model() -> None:
    lines = [_line("traces", "a", "credit", "2026-11-25T23:59:59"),
             _line("traces", "b", "credit", "2026-11-26T00:00:00"),
             _line("records", "c", "credit", "2026-11-25T10:00:00"),
             _line("traces", "d", "fraud", "2026-11-25T10:00:00"),
             _line("traces", "e", "credit", "2026-11-25T01:00:00")]
    objects = {o.key: o for o in build_objects(lines, batch="B")}
    assert set(objects) == {
        "traces/dt=2026-11-25/model=credit/B.jsonl.gz",
        "traces/dt=2026-11-26/model=credit/B.jsonl.gz",
        "records/dt=2026-11-25/model=credit/B.jsonl.gz",
        "traces/dt=2026-11-25/model=fraud/B.jsonl.gz",
    }
    assert objects["traces/dt=2026-11-25/model=credit/B.jsonl.gz"].request_ids == ("a", "e")


def test_objects_are_json_lines_gzip_that_pandas_reads() -> None:
    lines = [_line("traces", f"r-{i}", "credit", "2026-11-25T12:00:00") for i in range(50)]
    (obj,) = build_objects(lines, batch="B")
    frame = pd.read_json(io.BytesIO(obj.data), lines=True, compression="gzip")
    assert list(frame["request_id"]) == [f"r-{i}" for i in range(50)]
    assert gzip.decompress(obj.data).count(b"\n") == 50


def test_the_indexed_line_is_the_trace() -> None:
    lines = [_line("traces", f"r-{i}", "credit", "2026-11-25T12:00:00") for i in range(20)]
    (obj,) = build_objects(lines, batch="B")
    for number, rid in enumerate(obj.request_ids):
        key, line = parse_location(location(obj.key, number))
        assert key == obj.key
        body = read_line(obj.data, line)
        assert body is not None and orjson.loads(body)["request_id"] == rid
    assert read_line(obj.data, 20) is None


def test_batch_name_depends_on_the_entries_not_their_order() -> None:
    ids = [f"17000000000{i:02d}-{i % 3}" for i in range(30)]
    shuffled = ids[:]
    random.Random(4).shuffle(shuffled)
    assert batch_name(ids) == batch_name(shuffled)
    assert batch_name(ids) != batch_name(ids[:-1])
    assert batch_name(ids).startswith("1700000000000_0-")


def test_same_batch_compresses_to_the_same_bytes() -> None:
    lines = [_line("traces", "a", "credit", "2026-11-25T12:00:00")]
    assert build_objects(lines, batch="B")[0].data == build_objects(lines, batch="B")[0].data


@pytest.mark.parametrize("bad", ["no-line", "key#", "#3", "key#x"])
def test_malformed_locations_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="archive location"):
        parse_location(bad)


def test_every_object_key_maps_back_to_its_partition() -> None:
    lines = [_line("traces", "a", "credit/eu west", "2026-11-25T23:59:59"),
             _line("records", "b", "fraud", "2026-02-28T00:00:00")]
    for obj in build_objects(lines, batch="B"):
        partition = partition_of(obj.key)
        assert partition == Partition(obj.kind, obj.day, obj.model)
        assert obj.key.startswith(partition.prefix)
    assert partition_of("traces/dt=2026-11-25/model=credit%2Feu%20west/B.jsonl.gz") == \
        Partition("traces", "2026-11-25", "credit/eu west")


@pytest.mark.parametrize("key", [
    "models/credit/1/manifest.json", "traces/dt=2026-13-01/model=a/B.jsonl.gz",
    "traces/2026-11-25/model=a/B.jsonl.gz", "traces/dt=2026-11-25/model=/B.jsonl.gz",
    "records/dt=2026-11-25/B.jsonl.gz", "traces/dt=2026-11-25/model=a/sub/B.jsonl.gz"])
def test_keys_outside_the_layout_belong_to_no_partition(key: str) -> None:
    assert partition_of(key) is None


def test_a_partition_expires_a_retention_after_the_end_of_its_day() -> None:
    assert partition_expiry_ms("2026-11-25", 0) == _ms("2026-11-26T00:00:00")
    assert partition_expiry_ms("2026-12-31", 86400) == _ms("2027-01-02T00:00:00")
