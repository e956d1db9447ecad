"""Append-only local spool of prediction records, kept while the trace store is unreachable.

Layout of the spool folder (created on the first append, never before):

    records.spool   frames: magic "WS" | format (1) | length (4) | crc32 (4) | payload
                    payload: record ttl_s, inputs_ttl_s (8 + 8, -1: store default) | packed record
    records.offset  byte offset up to which frames were replayed into the store
    spool.lock      flock held by the one process that owns the folder

A record is spooled exactly as the store would keep it (`packing.pack_record`): its
compact log and its AES-GCM-sealed inputs, so nothing masking protects is written in the
clear. Every append is fsync'd before it returns. A frame torn by a crash can only be the
last one; it is moved aside to `records.spool.corrupt-<ms>` and cut off on open.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from storage.errors import SpoolFull, SpoolLocked
from storage.records import StoredRecord
from storage.traces.packing import PackingError, pack_record, unpack_record

logger = logging.getLogger(__name__)

_MAGIC = b"WS"
_FORMAT = 1
_FRAME = struct.Struct(">2sBII")
_TTLS = struct.Struct(">qq")
SPOOL_FILE = "records.spool"
OFFSET_FILE = "records.offset"
LOCK_FILE = "spool.lock"


@dataclass(frozen=True, slots=True)
class SpoolDepth:
    """Records and bytes waiting to be replayed."""

    records: int
    bytes: int
    full: bool = False
    """The last append was refused for lack of room (until an append fits or a replay)."""


@dataclass(frozen=True, slots=True)
class SpoolChunk:
    """Records read from the spool, in append order, and the offset just past them."""

    records: list[StoredRecord]
    end: int


def frame_size(record: StoredRecord) -> int:
    """Bytes one record takes in the spool."""
    return _FRAME.size + _TTLS.size + len(pack_record(record))


class FileSpool:
    """The spool of one process; thread-safe, every blocking call runs in a worker thread."""

    def __init__(self, directory: Path, *, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.directory = directory
        self.max_bytes = max_bytes
        self._path = directory / SPOOL_FILE
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = None
        self._lock_file: IO[bytes] | None = None
        self._size = 0
        self._offset = 0
        self._pending_records = 0
        self._full = False

    async def append(self, records: Sequence[StoredRecord]) -> None:
        """Append and fsync all records, or none of them.

        Raises:
            SpoolFull: the records do not fit under `max_bytes`.
            SpoolLocked: another process owns the spool folder.
        """
        frames = b"".join(_frame(record) for record in records)
        await asyncio.to_thread(self._append, frames, len(records))

    async def depth(self) -> SpoolDepth:
        """Records and bytes not yet replayed (opens a spool left by an earlier process)."""
        return await asyncio.to_thread(self._depth)

    async def read(self, max_records: int) -> SpoolChunk:
        """Return the oldest records not yet replayed (at most `max_records`)."""
        return await asyncio.to_thread(self._read, max_records)

    async def commit(self, end: int) -> None:
        """Mark everything before `end` (a chunk's end) as replayed."""
        await asyncio.to_thread(self._commit, end)

    async def close(self) -> None:
        """Close the file and release the folder's lock."""
        await asyncio.to_thread(self._close)

    def _append(self, frames: bytes, count: int) -> None:
        with self._lock:
            self._open(create=True)
            assert self._file is not None
            if self._size + len(frames) > self.max_bytes:
                self._full = True
                raise SpoolFull(str(self._path), self.max_bytes)
            self._full = False
            self._file.seek(self._size)
            self._file.write(frames)
            self._file.flush()
            os.fsync(self._file.fileno())
            self._size += len(frames)
            self._pending_records += count

    def _depth(self) -> SpoolDepth:
        with self._lock:
            if self._file is None and not self._path.exists():
                return SpoolDepth(0, 0)
            self._open(create=False)
            return SpoolDepth(self._pending_records, self._size - self._offset, self._full)

    def _read(self, max_records: int) -> SpoolChunk:
        with self._lock:
            if self._file is None and not self._path.exists():
                return SpoolChunk([], 0)
            self._open(create=False)
            assert self._file is not None
            start = self._offset
            self._file.seek(start)
            data = self._file.read(self._size - start)
        records: list[StoredRecord] = []
        position = 0
        while position < len(data) and len(records) < max_records:
            record, length = _parse_frame(data, position)
            if record is None:
                break
            records.append(record)
            position += length
        return SpoolChunk(records, start + position)

    def _commit(self, end: int) -> None:
        with self._lock:
            if self._file is None or end <= self._offset:
                return
            replayed = _count_frames(self._path, self._offset, end)
            self._full = False
            self._pending_records = max(0, self._pending_records - replayed)
            if end >= self._size:
                # Caught up: start over with an empty file rather than growing forever.
                self._file.truncate(0)
                os.fsync(self._file.fileno())
                self._size = self._offset = 0
                _write_offset(self.directory, 0)
                return
            self._offset = end
            _write_offset(self.directory, end)
            if self._offset > self.max_bytes // 2:
                self._compact()

    def _compact(self) -> None:
        assert self._file is not None
        self._file.seek(self._offset)
        rest = self._file.read(self._size - self._offset)
        temp = self._path.with_suffix(".compact")
        with open(temp, "wb") as out:
            out.write(rest)
            out.flush()
            os.fsync(out.fileno())
        # Offset 0 first: a crash between the two steps replays a prefix twice, which the
        # idempotent record log absorbs, but never skips a record.
        _write_offset(self.directory, 0)
        os.replace(temp, self._path)
        _fsync_dir(self.directory)
        self._file.close()
        self._file = open(self._path, "r+b")  # noqa: SIM115 - kept open for appends
        self._size, self._offset = len(rest), 0

    def _open(self, *, create: bool) -> None:
        if self._file is not None:
            return
        if create:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._take_lock()
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        self._file = os.fdopen(fd, "r+b")
        self._offset = _read_offset(self.directory)
        self._size = self._recover()
        self._pending_records = _count_frames(self._path, self._offset, self._size)

    def _take_lock(self) -> None:
        handle = open(self.directory / LOCK_FILE, "a+b")  # noqa: SIM115 - held until close
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.close()
            raise SpoolLocked(str(self.directory)) from exc
        self._lock_file = handle

    def _recover(self) -> int:
        """Return the size up to the last whole frame, moving a torn tail aside."""
        assert self._file is not None
        self._file.seek(0)
        data = self._file.read()
        if self._offset > len(data):
            logger.error("spool offset %d beyond file size %d; replaying from the start",
                         self._offset, len(data))
            self._offset = 0
        position = self._offset
        while position < len(data):
            record, length = _parse_frame(data, position)
            if record is None:
                break
            position += length
        if position < len(data):
            aside = self._path.with_name(f"{SPOOL_FILE}.corrupt-{time.time_ns() // 1_000_000}")
            aside.write_bytes(data[position:])
            logger.error("spool %s: %d bytes after offset %d are not a whole frame (torn "
                         "write?); moved to %s", self._path, len(data) - position, position,
                         aside)
            self._file.truncate(position)
            os.fsync(self._file.fileno())
        return position

    def _close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
            if self._lock_file is not None:
                with contextlib.suppress(OSError):
                    fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
                self._lock_file.close()
                self._lock_file = None


def _frame(record: StoredRecord) -> bytes:
    # Retention is a write-time setting the packed value does not carry; keep it too.
    ttls = _TTLS.pack(-1 if record.ttl_s is None else record.ttl_s,
                      -1 if record.inputs_ttl_s is None else record.inputs_ttl_s)
    payload = ttls + pack_record(record)
    return _FRAME.pack(_MAGIC, _FORMAT, len(payload), zlib.crc32(payload)) + payload


def _parse_frame(data: bytes, position: int) -> tuple[StoredRecord | None, int]:
    if position + _FRAME.size > len(data):
        return None, 0
    magic, fmt, length, crc = _FRAME.unpack_from(data, position)
    start = position + _FRAME.size
    payload = data[start: start + length]
    if magic != _MAGIC or fmt != _FORMAT or len(payload) != length or zlib.crc32(payload) != crc:
        return None, 0
    try:
        ttl_s, inputs_ttl_s = _TTLS.unpack_from(payload)
        record = unpack_record(payload[_TTLS.size:])
    except (PackingError, struct.error):
        return None, 0
    record = replace(record, ttl_s=None if ttl_s < 0 else ttl_s,
                     inputs_ttl_s=None if inputs_ttl_s < 0 else inputs_ttl_s)
    return record, _FRAME.size + length


def _count_frames(path: Path, start: int, end: int) -> int:
    if end <= start:
        return 0
    with open(path, "rb") as handle:
        handle.seek(start)
        data = handle.read(end - start)
    count = position = 0
    while position + _FRAME.size <= len(data):
        _, _, length, _ = _FRAME.unpack_from(data, position)
        position += _FRAME.size + length
        count += 1
    return count


def _read_offset(directory: Path) -> int:
    try:
        return int((directory / OFFSET_FILE).read_text(encoding="ascii").strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def _write_offset(directory: Path, offset: int) -> None:
    temp = directory / (OFFSET_FILE + ".tmp")
    with open(temp, "w", encoding="ascii") as out:
        out.write(str(offset))
        out.flush()
        os.fsync(out.fileno())
    os.replace(temp, directory / OFFSET_FILE)
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
