"""Key layout of the Redis trace store.

Every key of one model carries the hash tag `{model}`, so a Redis Cluster keeps a model's
values and indexes in one slot. Only three kinds of key are untagged: the request ID
lookup (a GET without the model must find it) and the cross-model indexes.

    {p}:{model}:t:{request_id}           trace value
    {p}:{model}:r:{request_id}           record value (log entry)
    {p}:{model}:s:{request_id}           sealed raw inputs of the record (own TTL)
    {p}:rid:{request_id}                 model name, for GET by request ID
    {p}:{model}:ix:all                   sorted sets: score event_ms, member request_id
    {p}:{model}:ix:v:{version}
    {p}:{model}:ix:r:{reason}
    {p}:{model}:ix:vr:{version}:{reason}
    {p}:{model}:ix:i:{incident}
    {p}:{model}:rx:all   {p}:{model}:rx:d        logged / deferred records, by event_ms
    {p}:{model}:budget                   explanation token bucket (hash: tokens, ms)
    {p}:ix:all   {p}:ix:r:{reason}   {p}:ix:i:{incident}

Model, version, reason and incident are percent-encoded (`:`, `{`, `}`, `%`, ...), so a
name can neither end the hash tag early nor make two index names collide.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from urllib.parse import quote, unquote

from storage.records import StoredTrace, TraceQuery


@functools.lru_cache(maxsize=4096)
def _part(name: str) -> str:
    # Models, versions and reasons are few and every key of a batch names them again.
    return quote(name, safe="")


@dataclass(frozen=True, slots=True)
class IndexChoice:
    """The one sorted set that answers a query, and what its members must satisfy.

    A member whose trace no longer satisfies the index (it was re-put with another
    reason, or has expired) is stale and can be removed from it.
    """

    key: str
    model: str | None = None
    version: str | None = None
    reason: str | None = None
    incident: str | None = None

    def holds(self, trace: StoredTrace) -> bool:
        """Tell whether the trace still belongs in this index."""
        return (
            (self.model is None or trace.model == self.model)
            and (self.version is None or trace.version == self.version)
            and (self.reason is None or trace.reason == self.reason)
            and (self.incident is None or self.incident in trace.incidents)
        )


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """Names every key of one deployment (one prefix)."""

    prefix: str

    def __post_init__(self) -> None:
        if not self.prefix or any(ch in self.prefix for ch in "{}"):
            # A brace in the prefix would become the hash tag of every key.
            raise ValueError("key prefix must be non-empty and free of '{' and '}'")

    def _tagged(self, model: str) -> str:
        return f"{self.prefix}:{{{_part(model)}}}"

    def trace(self, model: str, request_id: str) -> str:
        """Key of a trace value."""
        return f"{self._tagged(model)}:t:{request_id}"

    def record(self, model: str, request_id: str) -> str:
        """Key of a record value."""
        return f"{self._tagged(model)}:r:{request_id}"

    def sealed(self, model: str, request_id: str) -> str:
        """Key of a record's sealed inputs (own key: their retention can be shorter)."""
        return f"{self._tagged(model)}:s:{request_id}"

    def sealed_pattern(self) -> str:
        """SCAN pattern matching every sealed-input key of this prefix."""
        escaped = "".join("\\" + ch if ch in "*?[]\\" else ch for ch in self.prefix)
        return f"{escaped}:{{*}}:s:*"

    def parse_sealed(self, key: str) -> tuple[str, str] | None:
        """Return (model, request ID) of a sealed-input key, None for any other key."""
        head = f"{self.prefix}:{{"
        if not key.startswith(head):
            return None
        model, sep, request_id = key[len(head):].partition("}:s:")
        if not sep or not request_id:
            return None
        return unquote(model), request_id

    def lookup(self, request_id: str) -> str:
        """Key of the request ID → model name lookup."""
        return f"{self.prefix}:rid:{request_id}"

    def record_index(self, model: str) -> str:
        """Sorted set of a model's logged records (score event_ms), for listings."""
        return f"{self._tagged(model)}:rx:all"

    def deferred_index(self, model: str) -> str:
        """Sorted set of a model's records the explanation budget deferred."""
        return f"{self._tagged(model)}:rx:d"

    def budget(self, model: str) -> str:
        """Hash of the model's explanation token bucket (shared by replicas)."""
        return f"{self._tagged(model)}:budget"

    def incident_indexes(self, model: str, incident: str) -> list[str]:
        """The model's and the global sorted set of an incident's traces."""
        return [f"{self._tagged(model)}:ix:i:{_part(incident)}",
                f"{self.prefix}:ix:i:{_part(incident)}"]

    def indexes_of(self, trace: StoredTrace) -> list[str]:
        """Return every sorted set the trace is a member of."""
        tagged = self._tagged(trace.model)
        version = _part(trace.version)
        keys = [f"{tagged}:ix:all", f"{tagged}:ix:v:{version}", f"{self.prefix}:ix:all"]
        if trace.reason is not None:
            reason = _part(trace.reason)
            keys += [f"{tagged}:ix:r:{reason}", f"{tagged}:ix:vr:{version}:{reason}",
                     f"{self.prefix}:ix:r:{reason}"]
        for incident in trace.incidents:
            keys += [f"{tagged}:ix:i:{_part(incident)}", f"{self.prefix}:ix:i:{_part(incident)}"]
        return keys

    def index_for(self, query: TraceQuery) -> IndexChoice:
        """Return the sorted set that answers the query's filters.

        Incident sets are small, so with an incident the version and reason filters are
        checked on the traces instead of keeping a set per combination.
        """
        model, version = query.model, query.version
        reason, incident = query.reason, query.incident
        if model is None:
            if incident is not None:
                return IndexChoice(f"{self.prefix}:ix:i:{_part(incident)}", incident=incident)
            if reason is not None:
                return IndexChoice(f"{self.prefix}:ix:r:{_part(reason)}", reason=reason)
            return IndexChoice(f"{self.prefix}:ix:all")
        tagged = self._tagged(model)
        if incident is not None:
            return IndexChoice(f"{tagged}:ix:i:{_part(incident)}", model=model,
                               incident=incident)
        if version is not None and reason is not None:
            return IndexChoice(f"{tagged}:ix:vr:{_part(version)}:{_part(reason)}",
                               model=model, version=version, reason=reason)
        if version is not None:
            return IndexChoice(f"{tagged}:ix:v:{_part(version)}", model=model, version=version)
        if reason is not None:
            return IndexChoice(f"{tagged}:ix:r:{_part(reason)}", model=model, reason=reason)
        return IndexChoice(f"{tagged}:ix:all", model=model)
