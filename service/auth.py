"""API keys and roles: keys are stored as sha256 digests and compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from service.errors import AuthenticationMissing, RoleMissing, StartupRefused

Role = Literal["ingest", "read", "audit", "admin"]
ROLES: tuple[Role, ...] = ("ingest", "read", "audit", "admin")


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling, and what they may do."""

    name: str
    roles: frozenset[str]

    def require(self, role: Role) -> None:
        """Raise `RoleMissing` unless the caller has the role (admin implies all)."""
        if role not in self.roles and "admin" not in self.roles:
            raise RoleMissing(self.name, role)


ANONYMOUS_ADMIN = Caller("auth-off", frozenset(ROLES))


@dataclass(frozen=True, slots=True)
class _KeyEntry:
    name: str
    digest: bytes
    roles: frozenset[str]


class ApiKeyTable:
    """The configured keys; `authenticate` maps a presented key to a caller."""

    def __init__(self, entries: list[_KeyEntry]) -> None:
        self._entries = entries

    @classmethod
    def from_file(cls, path: Path) -> ApiKeyTable:
        """Load `[{name, sha256, roles}]` from a YAML or JSON file."""
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise StartupRefused(f"cannot read API keys file {path}: {exc}") from exc
        if isinstance(doc, dict):
            doc = doc.get("keys")
        if not isinstance(doc, list) or not doc:
            raise StartupRefused(f"API keys file {path} must be a non-empty list")
        entries = []
        for item in doc:
            try:
                digest = bytes.fromhex(str(item["sha256"]))
                roles = frozenset(str(r) for r in item["roles"])
                name = str(item["name"])
            except (KeyError, TypeError, ValueError) as exc:
                raise StartupRefused(f"bad API key entry in {path}: {exc!r}") from exc
            if len(digest) != 32 or not roles <= set(ROLES):
                raise StartupRefused(f"API key {name!r}: need a sha256 hex and roles ⊆ {ROLES}")
            entries.append(_KeyEntry(name, digest, roles))
        return cls(entries)

    def authenticate(self, presented: str | None) -> Caller:
        """Return the caller owning the key; raise `AuthenticationMissing` otherwise."""
        if not presented:
            raise AuthenticationMissing("send `Authorization: Bearer <key>` or `X-API-Key`")
        digest = hashlib.sha256(presented.encode()).digest()
        found: _KeyEntry | None = None
        # Compare against every entry so the time taken does not reveal which one matched.
        for entry in self._entries:
            if hmac.compare_digest(entry.digest, digest):
                found = entry
        if found is None:
            raise AuthenticationMissing("unknown API key")
        return Caller(found.name, found.roles)


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """Extract the key from either header."""
    if x_api_key:
        return x_api_key.strip()
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None
