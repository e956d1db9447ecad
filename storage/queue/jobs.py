"""Explanation jobs as stream entries: identifiers and the sampling decision, never features.

The worker reads the inputs from the record log's sealed inputs, so a job on the stream
carries nothing that masking protects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import orjson


class JobMalformed(ValueError):
    """A stream entry is not an explanation job written by this code."""


@dataclass(frozen=True, slots=True)
class ExplainJob:
    """Explain one logged record and store its trace."""

    request_id: str
    model: str
    version: str
    reason: str
    policy: str
    received_ms: int
    reexplain: bool = False
    """Replace an existing trace (incident backfills, explicit re-explanation)."""
    counterfactuals: int = 0
    """Counterfactuals the sampling decision asked for (0: the model's default)."""
    incidents: tuple[str, ...] = ()
    """Incidents the trace is linked to when stored."""

    def to_fields(self) -> dict[str, str]:
        """Return the stream entry's fields."""
        fields = {"request_id": self.request_id, "model": self.model, "version": self.version,
                  "reason": self.reason, "policy": self.policy,
                  "received_ms": str(self.received_ms),
                  "reexplain": "1" if self.reexplain else "0"}
        if self.counterfactuals:
            fields["counterfactuals"] = str(self.counterfactuals)
        if self.incidents:
            fields["incidents"] = orjson.dumps(list(self.incidents)).decode()
        return fields

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> ExplainJob:
        """Parse a stream entry.

        Raises:
            JobMalformed: a field is missing or not of its type.
        """
        try:
            incidents = orjson.loads(fields.get("incidents", "[]"))
            if not isinstance(incidents, list) or not all(isinstance(i, str) for i in incidents):
                raise ValueError("incidents is not a list of IDs")
            return cls(request_id=fields["request_id"], model=fields["model"],
                       version=fields["version"], reason=fields["reason"],
                       policy=fields["policy"], received_ms=int(fields["received_ms"]),
                       reexplain=fields.get("reexplain", "0") == "1",
                       counterfactuals=int(fields.get("counterfactuals", "0")),
                       incidents=tuple(incidents))
        except (KeyError, ValueError) as exc:
            raise JobMalformed(f"not an explanation job: {exc!r}") from exc
