"""The outage spool: ordered, capped, crash-tolerant, and never holding raw inputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from storage.crypto import InputSealer
from storage.errors import SpoolFull
from storage.keyring import new_keyring_document, parse_keyring
from storage.records import StoredRecord
from storage.spool import FileSpool, frame_size
from storage.spool.file import SPOOL_FILE

SECRET_ZIP = "94110-secret-zip"


@pytest.fixture(scope="module")
def sealer() -> InputSealer:
    return InputSealer(parse_keyring(new_keyring_document(), source="test"))


def _record(sealer: InputSealer, i: int, *, ttl_s: int | None = None) -> StoredRecord:
    rid = f"r-{i:05d}"
    features = {"zip_code": SECRET_ZIP, "income": 1000.0 + i}
    body = {"request_id": rid, "prediction": {"score": 0.5}, "sampled": i % 3 == 0}
    return StoredRecord(request_id=rid, model="credit", version="1", event_ms=1_700_000_000_000 + i,
                        received_ms=1_700_000_000_500 + i, sampled=i % 3 == 0,
                        reason="sampled" if i % 3 == 0 else None, body=orjson.dumps(body),
                        sealed_inputs=sealer.seal(orjson.dumps(features), request_id=rid),
                        ttl_s=ttl_s, inputs_ttl_s=None if ttl_s is None else ttl_s // 2)


async def _drain(spool: FileSpool, batch: int) -> list[StoredRecord]:
    out: list[StoredRecord] = []
    while True:
        chunk = await spool.read(batch)
        if not chunk.records:
            return out
        out.extend(chunk.records)
        await spool.commit(chunk.end)


async def test_records_come_back_in_append_order_with_their_retention(
        tmp_path: Path, sealer: InputSealer) -> None:
    spool = FileSpool(tmp_path / "spool", max_bytes=1 << 20)
    records = [_record(sealer, i, ttl_s=3600 if i % 2 else None) for i in range(25)]
    for start in range(0, 25, 7):
        await spool.append(records[start:start + 7])
    depth = await spool.depth()
    assert depth.records == 25
    assert depth.bytes == sum(frame_size(r) for r in records)
    replayed = await _drain(spool, batch=4)
    assert replayed == records
    assert (await spool.depth()).records == 0
    await spool.close()


async def test_nothing_touches_the_disk_until_the_first_append(tmp_path: Path) -> None:
    spool = FileSpool(tmp_path / "spool", max_bytes=1024)
    assert (await spool.depth()).records == 0
    assert (await spool.read(10)).records == []
    assert not (tmp_path / "spool").exists()
    await spool.close()


async def test_full_spool_refuses_the_whole_batch_and_keeps_what_it_has(
        tmp_path: Path, sealer: InputSealer) -> None:
    first = [_record(sealer, i) for i in range(3)]
    cap = sum(frame_size(r) for r in first) + frame_size(_record(sealer, 3)) // 2
    spool = FileSpool(tmp_path / "spool", max_bytes=cap)
    await spool.append(first)
    with pytest.raises(SpoolFull):
        await spool.append([_record(sealer, 3), _record(sealer, 4)])
    assert (await spool.depth()).records == 3
    assert await _drain(spool, batch=10) == first
    # Replayed and truncated: room again.
    await spool.append([_record(sealer, 3)])
    assert (await spool.depth()).records == 1
    await spool.close()


async def test_a_torn_last_frame_is_moved_aside_and_the_rest_survives(
        tmp_path: Path, sealer: InputSealer) -> None:
    directory = tmp_path / "spool"
    spool = FileSpool(directory, max_bytes=1 << 20)
    records = [_record(sealer, i) for i in range(5)]
    await spool.append(records)
    await spool.close()
    with open(directory / SPOOL_FILE, "ab") as handle:
        handle.write(b"WS\x01\x00\x00\x01\x00garbage")  # a crash in the middle of a frame
    reopened = FileSpool(directory, max_bytes=1 << 20)
    assert (await reopened.depth()).records == 5
    assert await _drain(reopened, batch=2) == records
    assert len(list(directory.glob(f"{SPOOL_FILE}.corrupt-*"))) == 1
    await reopened.close()


async def test_replay_resumes_after_the_last_committed_chunk_across_restarts(
        tmp_path: Path, sealer: InputSealer) -> None:
    directory = tmp_path / "spool"
    spool = FileSpool(directory, max_bytes=1 << 20)
    records = [_record(sealer, i) for i in range(10)]
    await spool.append(records)
    chunk = await spool.read(4)
    await spool.commit(chunk.end)
    uncommitted = await spool.read(3)  # read, then the process dies before committing
    assert uncommitted.records == records[4:7]
    await spool.close()
    reopened = FileSpool(directory, max_bytes=1 << 20)
    assert (await reopened.depth()).records == 6
    assert await _drain(reopened, batch=100) == records[4:]
    await reopened.close()


async def test_a_second_process_cannot_take_the_same_spool(
        tmp_path: Path, sealer: InputSealer) -> None:
    first = FileSpool(tmp_path / "spool", max_bytes=1 << 20)
    await first.append([_record(sealer, 0)])
    # A separate process, as a second replica sharing the folder would be.
    script = (
        "import asyncio, sys\n"
        "from storage.errors import SpoolLocked\n"
        "from storage.spool import FileSpool\n"
        "try:\n"
        f"    asyncio.run(FileSpool(__import__('pathlib').Path({str(tmp_path / 'spool')!r}),"
        " max_bytes=1 << 20).depth())\n"
        "except SpoolLocked:\n"
        "    sys.exit(7)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[3],
                          check=False, capture_output=True)
    assert done.returncode == 7, done.stderr.decode()
    await first.close()


async def test_spooled_bytes_hold_no_raw_feature_value(
        tmp_path: Path, sealer: InputSealer) -> None:
    spool = FileSpool(tmp_path / "spool", max_bytes=1 << 20)
    await spool.append([_record(sealer, i) for i in range(5)])
    raw = (tmp_path / "spool" / SPOOL_FILE).read_bytes()
    assert SECRET_ZIP.encode() not in raw
    assert b"1001.0" not in raw
    await spool.close()


async def test_compaction_keeps_unreplayed_records(tmp_path: Path, sealer: InputSealer) -> None:
    records = [_record(sealer, i) for i in range(40)]
    size = sum(frame_size(r) for r in records)
    spool = FileSpool(tmp_path / "spool", max_bytes=size + 10)
    await spool.append(records)
    chunk = await spool.read(30)  # past half the cap: the file is rewritten
    await spool.commit(chunk.end)
    assert (tmp_path / "spool" / SPOOL_FILE).stat().st_size == sum(
        frame_size(r) for r in records[30:])
    late = _record(sealer, 40)
    await spool.append([late])
    assert await _drain(spool, batch=7) == [*records[30:], late]
    await spool.close()
