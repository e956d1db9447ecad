"""One SQLite connection owned by one worker thread, for the embedded stores.

Every call runs on a single-thread executor that owns the only connection, so writes are
serialized without locks in Python and the event loop never blocks on disk. Several
stores may open the same file (each its own worker); WAL lets them read concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from storage.errors import StoreUnavailable

logger = logging.getLogger(__name__)

T = TypeVar("T")

BACKEND = "sqlite"
# Writers from another connection wait this long for the lock.
BUSY_TIMEOUT_S = 5.0


def now_ms() -> int:
    """Wall-clock time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def enable_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL, retrying while another connection holds the lock."""
    # Switching a new file to WAL needs an exclusive lock, and SQLite answers BUSY at once
    # instead of calling the busy handler: connections opening together must retry here.
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """Run the block in a BEGIN IMMEDIATE transaction (the write lock taken up front)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


# Per-connection settings every store wants: NORMAL under WAL loses at most the last
# commits on power loss, never integrity.
DEFAULT_PRAGMAS = ("PRAGMA synchronous=NORMAL",)


class SqliteWorker:
    """Runs jobs against one lazily opened connection on a dedicated thread.

    Opening the connection: `before_wal` statements (those that only work on an empty file),
    WAL, `pragmas`, `migrate(conn)` (an older file brought up to date), the `schema`
    script, then `setup(conn)` for what a script cannot say.
    """

    def __init__(self, path: str, *, schema: str, thread_name: str,
                 before_wal: tuple[str, ...] = (), pragmas: tuple[str, ...] = DEFAULT_PRAGMAS,
                 migrate: Callable[[sqlite3.Connection], None] | None = None,
                 setup: Callable[[sqlite3.Connection], None] | None = None) -> None:
        self.path = path
        self._schema = schema
        self._before_wal = before_wal
        self._pragmas = pragmas
        self._migrate = migrate
        self._setup = setup
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)
        # Touched only on the worker thread; opened on first use so construction does no I/O.
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    async def run(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """Run `job(connection)` on the worker thread; SQLite errors become StoreUnavailable."""
        if self._closed:
            raise StoreUnavailable(BACKEND, "the store is closed")
        try:
            future = self._executor.submit(self._call, job)
        except RuntimeError as exc:
            raise StoreUnavailable(BACKEND, "the store is closed") from exc
        return await asyncio.wrap_future(future)

    async def close(self) -> None:
        """Close the connection after every queued job; later calls fail."""
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.wrap_future(self._executor.submit(self._close_connection))
        except sqlite3.Error as exc:
            raise StoreUnavailable(BACKEND, f"{self.path}: {exc}") from exc
        finally:
            self._executor.shutdown(wait=False)

    def _call(self, job: Callable[[sqlite3.Connection], T]) -> T:
        try:
            if self._conn is None:
                self._conn = self._open()
            return job(self._conn)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(BACKEND, f"{self.path}: {exc}") from exc

    def _open(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            for statement in self._before_wal:
                conn.execute(statement)
            enable_wal(conn)
            for statement in self._pragmas:
                conn.execute(statement)
            if self._migrate is not None:
                self._migrate(conn)
            conn.executescript(self._schema)
            if self._setup is not None:
                self._setup(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
