"""Trace stores: embedded SQLite and shared Redis, both also the prediction record log."""

from storage.traces.redis import RedisTraceStore
from storage.traces.sqlite import SqliteTraceStore

__all__ = ["RedisTraceStore", "SqliteTraceStore"]
