"""Versioned key material for sealing inputs (AES-256-GCM) and pseudonyms (HMAC-SHA256).

The keyring file is JSON or YAML:

    keys:
      - {id: "aead-2026-11", kind: aead, status: active, created: "...",
         secret: "<base64 32 bytes>"}
      - {id: "hmac-2026-11", kind: hmac, status: active, created: "...", secret: "<base64>"}

`status` is `active` (used for new data; one per kind), `decrypt` (still opens old
ciphertexts) or `retired` (refused). Key bytes never appear in `repr` or logs.
`whylens keys` rotates, activates and retires keys (docs/security.md).

Envelope mode (KMS-style): with a master key, each entry holds `wrapped` (its secret
sealed with AES-256-GCM under the master key, bound to the key's id and kind) instead
of `secret`, so the keyring file alone opens nothing.
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import yaml
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

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


def parse_keyring(text: str, *, source: str, master_key: bytes | None = None) -> Keyring:
    """Parse a keyring document (JSON is valid YAML) and check it has both active keys.

    `master_key` unwraps entries stored `wrapped` (envelope mode).
    """
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KeyringInvalid(source, "not valid YAML or JSON") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise KeyringInvalid(source, "expected a mapping with a 'keys' list")
    entries = [_parse_entry(item, source, master_key) for item in doc["keys"]]
    ring = Keyring(tuple(entries))
    for kind in ("aead", "hmac"):
        actives = [e for e in entries if e.kind == kind and e.status == "active"]
        if len(actives) != 1:
            raise KeyringInvalid(source, f"needs exactly one active {kind} key, has {len(actives)}")
    return ring


def _parse_entry(item: object, source: str, master_key: bytes | None) -> KeyEntry:
    if not isinstance(item, dict):
        raise KeyringInvalid(source, "each key must be a mapping")
    try:
        if "wrapped" in item:
            secret = _unwrap(item, source, master_key)
        else:
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


def load_keyring(path: Path, *, master_key: bytes | None = None) -> Keyring:
    """Read and parse a keyring file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeyringInvalid(str(path), f"cannot read ({exc.strerror})") from exc
    return parse_keyring(text, source=str(path), master_key=master_key)


def parse_master_key(encoded: str) -> bytes:
    """Decode a master key (base64 of 32 bytes)."""
    try:
        key = base64.b64decode(encoded.strip(), validate=True)
    except ValueError as exc:
        raise KeyringInvalid("master key", "not base64") from exc
    if len(key) != 32:
        raise KeyringInvalid("master key", "must be 32 bytes (AES-256)")
    return key


def _wrapping_context(key_id: str, kind: str) -> bytes:
    # Binds a wrapped secret to its entry: moving it to another id or kind fails.
    return f"whylens-keyring/1:{key_id}:{kind}".encode()


def _wrap(entry: KeyEntry, master_key: bytes) -> str:
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(master_key).encrypt(nonce, entry.secret,
                                        _wrapping_context(entry.key_id, entry.kind))
    return base64.b64encode(nonce + sealed).decode()


def _unwrap(item: dict[str, object], source: str, master_key: bytes | None) -> bytes:
    key_id = str(item.get("id"))
    if master_key is None:
        raise KeyringInvalid(source, f"key {key_id!r} is wrapped: set WHYLENS_KEYRING_MASTER_KEY")
    try:
        data = base64.b64decode(str(item["wrapped"]), validate=True)
        return AESGCM(master_key).decrypt(data[:12], data[12:],
                                          _wrapping_context(key_id, str(item.get("kind"))))
    except (InvalidTag, ValueError) as exc:
        raise KeyringInvalid(source, f"key {key_id!r} does not unwrap with this master "
                                     "key") from exc


def new_key(kind: KeyKind, status: KeyStatus = "active") -> KeyEntry:
    """Generate a key of a kind: 32 random bytes, an id naming the kind and the time."""
    now = datetime.now(UTC)
    key_id = f"{kind}-{now.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(2)}"
    return KeyEntry(key_id=key_id, kind=kind, status=status,
                    created=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    secret=secrets.token_bytes(32))


def keyring_document(ring: Keyring, *, master_key: bytes | None = None) -> str:
    """Render a keyring as the YAML document `parse_keyring` reads.

    Secrets are included in the clear, or wrapped under `master_key` when given.
    """
    doc = {"keys": [
        {"id": e.key_id, "kind": e.kind, "status": e.status, "created": e.created,
         **({"wrapped": _wrap(e, master_key)} if master_key is not None
            else {"secret": base64.b64encode(e.secret).decode()})}
        for e in ring.entries
    ]}
    return str(yaml.safe_dump(doc, sort_keys=False))


def new_keyring_document() -> str:
    """Return a fresh keyring (one active key per kind) as YAML."""
    return keyring_document(Keyring((new_key("aead"), new_key("hmac"))))


def rotate_keyring(ring: Keyring, kinds: tuple[KeyKind, ...], *,
                   stage: bool = False) -> tuple[Keyring, list[KeyEntry]]:
    """Add a new key per kind; return the new ring and the added keys.

    Without `stage` the new keys become active and the previous active ones `decrypt`.
    With `stage` they are added as `decrypt` (every replica can open what they seal),
    to be made active by `activate_key` once every replica has the new file.
    """
    added = [new_key(kind, "decrypt" if stage else "active") for kind in kinds]
    entries = [
        replace(e, status="decrypt") if not stage and e.kind in kinds and e.status == "active"
        else e
        for e in ring.entries
    ]
    return Keyring((*entries, *added)), added


def activate_key(ring: Keyring, key_id: str) -> Keyring:
    """Make a `decrypt` key the active one of its kind; the previous active → `decrypt`."""
    target = _entry(ring, key_id)
    if target.status == "retired":
        raise KeyringInvalid("keyring", f"key {key_id!r} is retired and cannot be activated")
    return Keyring(tuple(
        replace(e, status="active") if e.key_id == key_id
        else replace(e, status="decrypt") if e.kind == target.kind and e.status == "active"
        else e
        for e in ring.entries
    ))


def retire_key(ring: Keyring, key_id: str) -> Keyring:
    """Mark a non-active key `retired`: nothing it sealed opens any more."""
    target = _entry(ring, key_id)
    if target.status == "active":
        raise KeyringInvalid("keyring", f"key {key_id!r} is active; rotate before retiring it")
    return Keyring(tuple(replace(e, status="retired") if e.key_id == key_id else e
                         for e in ring.entries))


def _entry(ring: Keyring, key_id: str) -> KeyEntry:
    for entry in ring.entries:
        if entry.key_id == key_id:
            return entry
    raise KeyringInvalid("keyring", f"no key {key_id!r}")


def write_keyring_file(path: Path, text: str, *, master_key: bytes | None = None) -> None:
    """Replace a keyring file atomically, readable by the owner only."""
    # Never write a ring the service cannot load.
    parse_keyring(text, source=str(path), master_key=master_key)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def create_keyring_file(path: Path) -> None:
    """Write a new keyring readable by the owner only; never overwrite an existing one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(new_keyring_document())
