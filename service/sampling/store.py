"""Published sampling policies, kept in the artifact store beside the model.

    models/<name>/policies/<n>.json    every version ever published (immutable)
    models/<name>/policy.json          the current version (a copy, replaced atomically)

Replicas read only `policy.json`; the numbered files are the history. A version number
is one more than the highest published; two admins publishing at the same instant may
both write the same number (the later write wins), which policy edits accept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from service.errors import PolicyUnreadable, RecordInvalid
from service.sampling.document import PolicyDocument, validate_policy
from storage.errors import ArtifactNotFound
from storage.protocols import ArtifactStore

_HISTORY = re.compile(r"^models/[^/]+/policies/([0-9]{1,9})\.json$")


@dataclass(frozen=True, slots=True)
class StoredPolicy:
    """One published policy version."""

    model: str
    version: int
    updated_at: str
    updated_by: str
    document: PolicyDocument

    def as_json(self) -> dict[str, Any]:
        """The stored (and served) form."""
        return {"model": self.model, "version": self.version, "updated_at": self.updated_at,
                "updated_by": self.updated_by,
                "policy": self.document.model_dump(mode="json", exclude_none=True)}


class PolicyStore:
    """Reads and publishes policy versions in an `ArtifactStore`."""

    def __init__(self, artifacts: ArtifactStore, *, max_counterfactuals: int) -> None:
        self._artifacts = artifacts
        self._max_counterfactuals = max_counterfactuals

    async def current(self, model: str) -> StoredPolicy | None:
        """Return the current policy, None when the model has none published."""
        return await self._read(model, f"models/{model}/policy.json")

    async def at_version(self, model: str, version: int) -> StoredPolicy | None:
        """Return one published version, None when it does not exist."""
        return await self._read(model, f"models/{model}/policies/{version}.json")

    async def versions(self, model: str) -> list[int]:
        """Return the published version numbers, ascending."""
        keys = await self._artifacts.list(f"models/{model}/policies/")
        return sorted(int(m.group(1)) for k in keys if (m := _HISTORY.match(k)))

    async def publish(self, model: str, document: PolicyDocument, *,
                      updated_by: str) -> StoredPolicy:
        """Write the next version (history first, then the current copy) and return it."""
        current = await self.current(model)
        highest = max([0, *(await self.versions(model))])
        version = max(highest, current.version if current else 0) + 1
        stored = StoredPolicy(model=model, version=version, updated_by=updated_by,
                              updated_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                              document=document)
        data = orjson.dumps(stored.as_json(), option=orjson.OPT_INDENT_2) + b"\n"
        await self._artifacts.write(f"models/{model}/policies/{version}.json", data)
        await self._artifacts.write(f"models/{model}/policy.json", data)
        return stored

    async def _read(self, model: str, key: str) -> StoredPolicy | None:
        try:
            data = await self._artifacts.read(key)
        except ArtifactNotFound:
            return None
        try:
            raw = orjson.loads(data)
            document = validate_policy(raw["policy"],
                                       max_counterfactuals=self._max_counterfactuals)
            return StoredPolicy(model=model, version=int(raw["version"]),
                                updated_at=str(raw.get("updated_at", "")),
                                updated_by=str(raw.get("updated_by", "")), document=document)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise PolicyUnreadable(model, key, f"{type(exc).__name__}: {exc}") from exc
        except RecordInvalid as exc:
            raise PolicyUnreadable(model, key, str(exc)) from exc
