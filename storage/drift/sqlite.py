"""Drift windows in SQLite (embedded mode): one UPSERT row per window bucket."""

from __future__ import annotations

import functools
import logging
import sqlite3
import zlib
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import orjson

from storage.drift.records import (
    BucketRef,
    WindowIncrement,
    WindowKey,
    bucket_expiry_ms,
    is_maximum,
)
from storage.sqlite_worker import BACKEND, SqliteWorker, transaction
from storage.sqlite_worker import now_ms as _now_ms

logger = logging.getLogger(__name__)

PURGE_CHUNK = 5000
IN_CHUNK = 500

SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS drift_buckets (
    model        TEXT NOT NULL,
    version      TEXT NOT NULL,
    segment      TEXT NOT NULL,
    resolution_s INTEGER NOT NULL,
    bucket_ms    INTEGER NOT NULL,
    counters     BLOB NOT NULL,
    expires_ms   INTEGER NOT NULL,
    PRIMARY KEY (model, version, segment, resolution_s, bucket_ms)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS drift_buckets_by_expiry ON drift_buckets (expires_ms);
CREATE TABLE IF NOT EXISTS drift_segments (
    model      TEXT NOT NULL,
    dimension  TEXT NOT NULL,
    value      TEXT NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (model, dimension, value)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS drift_labels (
    model      TEXT NOT NULL,
    request_id TEXT NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (model, request_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS drift_labels_by_expiry ON drift_labels (expires_ms);
COMMIT;
"""

_BUCKET = "model = ? AND version = ? AND segment = ? AND resolution_s = ?"
SELECT_BUCKET = (f"SELECT counters FROM drift_buckets WHERE {_BUCKET} AND bucket_ms = ?"
                 " AND expires_ms > ?")
PUT_BUCKET = ("INSERT INTO drift_buckets (model, version, segment, resolution_s, bucket_ms,"
              " counters, expires_ms) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET"
              " counters = excluded.counters, expires_ms = excluded.expires_ms")
# An expired claim (past retention, not yet purged) may be claimed again.
CLAIM_LABEL = ("INSERT INTO drift_labels (model, request_id, expires_ms) VALUES (?, ?, ?)"
               " ON CONFLICT DO UPDATE SET expires_ms = excluded.expires_ms"
               " WHERE drift_labels.expires_ms <= ?")



def _pack(counters: dict[str, float]) -> bytes:
    # Deflated JSON: a bucket's ~7,000 counters shrink about fivefold.
    return zlib.compress(orjson.dumps(counters), 1)


def _unpack(blob: bytes) -> dict[str, float]:
    counters: dict[str, float] = orjson.loads(zlib.decompress(blob))
    return counters


class SqliteDriftWindowStore:
    """Drift counters in SQLite, used from one dedicated worker thread.

    One row per window bucket holds its counters as deflated JSON, merged with each
    batch's increments inside an IMMEDIATE transaction (another process writing the same
    file waits for the lock, so no increment is lost). A row per counter was measured
    first: a batch of 1,000 records touches ~7,000 counters and the UPSERTs took over 20× as
    long as reading, merging and rewriting the two bucket rows.

    Shares the trace store's database file (its own tables and connection). Rows carry
    the bucket's expiry; reads ignore expired rows and `purge_expired` deletes them.
    """

    backend = BACKEND

    def __init__(self, path: str, *, retention_s: int) -> None:
        if retention_s <= 0:
            raise ValueError("retention must be positive")
        self._retention_s = retention_s
        self._worker = SqliteWorker(path, schema=SCHEMA, thread_name="whylens-drift")
        self._run = self._worker.run

    async def add_window_counts(self, increments: Sequence[WindowIncrement]) -> None:
        """Add every increment in one transaction."""
        if increments:
            await self._run(functools.partial(self._add, list(increments)))

    async def read_window_counts(self, key: WindowKey,
                                 buckets: Sequence[BucketRef]) -> dict[str, float]:
        """Return the counters of the buckets merged (summed; maxima kept as maxima)."""
        if not buckets:
            return {}
        return await self._run(functools.partial(self._read, key, list(buckets)))

    async def admit_segments(self, model: str, dimension: str, values: Sequence[str], *,
                             cap: int) -> frozenset[str]:
        """Return the values admitted as segments: known ones, then new ones up to `cap`."""
        if not values:
            return frozenset()
        return await self._run(functools.partial(self._admit, model, dimension,
                                                 list(dict.fromkeys(values)), cap))

    async def claim_labels(self, model: str, request_ids: Sequence[str]) -> list[bool]:
        """Claim each request ID's label once; True where this call claimed it."""
        if not request_ids:
            return []
        return await self._run(functools.partial(self._claim, model, list(request_ids)))

    async def purge_expired(self) -> int:
        """Delete expired counters, segments and label claims; return how many."""
        now_ms = _now_ms()
        total = 0
        for table in ("drift_buckets", "drift_segments", "drift_labels"):
            while True:
                deleted = await self._run(functools.partial(self._purge_chunk, table, now_ms))
                total += deleted
                if deleted < PURGE_CHUNK:
                    break
        return total

    async def ping(self) -> None:
        """Open the database if needed and run a trivial query."""
        await self._run(lambda conn: conn.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        """Close the connection and stop the worker thread."""
        await self._worker.close()

    def _add(self, increments: list[WindowIncrement], conn: sqlite3.Connection) -> None:
        grouped: dict[tuple[Any, ...], list[WindowIncrement]] = defaultdict(list)
        for inc in increments:
            grouped[(inc.key.model, inc.key.version, inc.key.segment, inc.bucket.resolution_s,
                     inc.bucket.start_ms)].append(inc)
        now_ms = _now_ms()
        with transaction(conn):
            for head, group in grouped.items():
                row = conn.execute(SELECT_BUCKET, (*head, now_ms)).fetchone()
                counters: dict[str, float] = _unpack(row[0]) if row else {}
                for inc in group:
                    for name, count in inc.counts.items():
                        counters[name] = counters.get(name, 0) + count
                    for name, value in inc.sums.items():
                        # 12 significant digits: float noise (…49999999999) is not data.
                        counters[name] = float(f"{counters.get(name, 0.0) + value:.12g}")
                    for name, latest in inc.maxima.items():
                        counters[name] = max(counters.get(name, latest), latest)
                expires = bucket_expiry_ms(group[0].bucket, self._retention_s)
                conn.execute(PUT_BUCKET, (*head, _pack(counters), expires))

    def _read(self, key: WindowKey, buckets: list[BucketRef],
              conn: sqlite3.Connection) -> dict[str, float]:
        by_resolution: defaultdict[int, list[int]] = defaultdict(list)
        for bucket in buckets:
            by_resolution[bucket.resolution_s].append(bucket.start_ms)
        merged: dict[str, float] = {}
        now_ms = _now_ms()
        for resolution, starts in by_resolution.items():
            for offset in range(0, len(starts), IN_CHUNK):
                chunk = starts[offset: offset + IN_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT counters FROM drift_buckets WHERE {_BUCKET}"
                    f" AND bucket_ms IN ({marks}) AND expires_ms > ?",
                    (key.model, key.version, key.segment, resolution, *chunk, now_ms))
                for (blob,) in rows:
                    for name, value in _unpack(blob).items():
                        if is_maximum(name):
                            merged[name] = float(max(merged.get(name, value), value))
                        else:
                            merged[name] = merged.get(name, 0.0) + value
        return merged

    def _admit(self, model: str, dimension: str, values: list[str], cap: int,
               conn: sqlite3.Connection) -> frozenset[str]:
        now_ms = _now_ms()
        expires = now_ms + self._retention_s * 1000
        admitted = set()
        with transaction(conn):
            known = {row[0] for row in conn.execute(
                "SELECT value FROM drift_segments WHERE model = ? AND dimension = ?"
                " AND expires_ms > ?", (model, dimension, now_ms))}
            for value in values:
                if value in known or len(known) < cap:
                    known.add(value)
                    admitted.add(value)
            conn.executemany(
                "INSERT INTO drift_segments (model, dimension, value, expires_ms)"
                " VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET expires_ms = excluded.expires_ms",
                [(model, dimension, value, expires) for value in admitted])
        return frozenset(admitted)

    def _claim(self, model: str, request_ids: list[str],
               conn: sqlite3.Connection) -> list[bool]:
        now_ms = _now_ms()
        expires = now_ms + self._retention_s * 1000
        claimed = []
        with transaction(conn):
            for request_id in request_ids:
                cursor = conn.execute(CLAIM_LABEL, (model, request_id, expires, now_ms))
                claimed.append(cursor.rowcount == 1)
        return claimed

    def _purge_chunk(self, table: str, now_ms: int, conn: sqlite3.Connection) -> int:
        keys = {"drift_buckets": "model, version, segment, resolution_s, bucket_ms",
                "drift_segments": "model, dimension, value",
                "drift_labels": "model, request_id"}[table]
        with transaction(conn):
            cursor = conn.execute(
                f"DELETE FROM {table} WHERE ({keys}) IN"
                f" (SELECT {keys} FROM {table} WHERE expires_ms <= ? LIMIT ?)",
                (now_ms, PURGE_CHUNK))
            return cursor.rowcount
