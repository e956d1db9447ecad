"""Incident stores: incidents, attached request IDs and the durable outbox (SQLite, Redis)."""

from storage.incidents.redis import RedisIncidentStore
from storage.incidents.sqlite import SqliteIncidentStore

__all__ = ["RedisIncidentStore", "SqliteIncidentStore"]
