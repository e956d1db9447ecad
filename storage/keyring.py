"""Versioned key material for sealing inputs (AES-256-GCM) and pseudonyms (HMAC-SHA256).

The keyring file is JSON or YAML:

    keys:
      - {id: "aead-2026-11", kind: aead, status: active, created: "...",
         secret: "<base64 32 bytes>"}
      - {id: "hmac-2026-11", kind: hmac, status: active, created: "...", secret: "<base64>"}

`status` is `active` (used for new data; one per kind), `decrypt` (still opens old
ciphertexts) or `retired` (refused). Key bytes never appear in `repr` or logs.
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import yaml

from storage.errors import StorageError

KeyKind = Literal["aead", "hmac"]
KeyStatus = Literal["active", "decrypt", "retired"]


class KeyringInvalid(StorageError):
    """The keyring file is missing, malformed, or lacks an active key of a kind."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"keyring {source}: {reason}")
        self.source = source
        self.reason = reason


class KeyUnknown(StorageError):
    """A ciphertext names a key that the keyring does not hold (or holds as retired)."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"key {key_id!r} is not available for decryption")
        self.key_id = key_id


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """One key of the ring."""

    key_id: str
    kind: KeyKind
    status: KeyStatus
    created: str
    secret: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Keyring:
    """All keys, with the active one per kind."""

    entries: tuple[KeyEntry, ...]

    def active(self, kind: KeyKind) -> KeyEntry:
        """Return the active key of a kind."""
        for entry in self.entries:
            if entry.kind == kind and entry.status == "active":
                return entry
        raise KeyringInvalid("keyring", f"no active {kind} key")

    def for_decryption(self, key_id: str) -> KeyEntry:
        """Return a non-retired key by id."""
        for entry in self.entries:
            if entry.key_id == key_id and entry.status != "retired":
                return entry
        raise KeyUnknown(key_id)


def parse_keyring(text: str, *, source: str) -> Keyring:
    """Parse a keyring document (JSON is valid YAML) and check it has both active keys."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KeyringInvalid(source, "not valid YAML or JSON") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise KeyringInvalid(source, "expected a mapping with a 'keys' list")
    entries = [_parse_entry(item, source) for item in doc["keys"]]
    ring = Keyring(tuple(entries))
    for kind in ("aead", "hmac"):
        actives = [e for e in entries if e.kind == kind and e.status == "active"]
        if len(actives) != 1:
            raise KeyringInvalid(source, f"needs exactly one active {kind} key, has {len(actives)}")
    return ring


def _parse_entry(item: object, source: str) -> KeyEntry:
    if not isinstance(item, dict):
        raise KeyringInvalid(source, "each key must be a mapping")
    try:
        secret = base64.b64decode(str(item["secret"]), validate=True)
        entry = KeyEntry(
            key_id=str(item["id"]),
            kind=item["kind"],
            status=item.get("status", "active"),
            created=str(item.get("created", "")),
            secret=secret,
        )
    except (KeyError, ValueError) as exc:
        raise KeyringInvalid(source, f"bad key entry ({type(exc).__name__})") from exc
    if entry.kind not in ("aead", "hmac") or entry.status not in ("active", "decrypt", "retired"):
        raise KeyringInvalid(source, f"key {entry.key_id!r} has an unknown kind or status")
    if entry.kind == "aead" and len(secret) != 32:
        raise KeyringInvalid(source, f"aead key {entry.key_id!r} must be 32 bytes (AES-256)")
    if entry.kind == "hmac" and len(secret) < 32:
        raise KeyringInvalid(source, f"hmac key {entry.key_id!r} must be at least 32 bytes")
    return entry


def load_keyring(path: Path) -> Keyring:
    """Read and parse a keyring file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeyringInvalid(str(path), f"cannot read ({exc.strerror})") from exc
    return parse_keyring(text, source=str(path))


def new_keyring_document() -> str:
    """Return a fresh keyring (one active key per kind) as YAML."""
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    doc = {
        "keys": [
            {"id": f"aead-{stamp}", "kind": "aead", "status": "active", "created": created,
             "secret": base64.b64encode(secrets.token_bytes(32)).decode()},
            {"id": f"hmac-{stamp}", "kind": "hmac", "status": "active", "created": created,
             "secret": base64.b64encode(secrets.token_bytes(32)).decode()},
        ]
    }
    return str(yaml.safe_dump(doc, sort_keys=False))


def create_keyring_file(path: Path) -> None:
    """Write a new keyring readable by the owner only; never overwrite an existing one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(new_keyring_document())
