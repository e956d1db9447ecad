"""Sealing of raw inputs with AES-256-GCM; the request ID is the associated data.

Envelope layout (bytes): version (1) | key id length (1) | key id (utf-8) | nonce (12) |
ciphertext+tag. The key id travels with the ciphertext so that rotated keys still open
old records, and binding the request ID means a sealed blob moved to another record
fails to open instead of leaking into the wrong trace.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from storage.errors import StorageError
from storage.keyring import Keyring

_VERSION = 1
_NONCE_BYTES = 12


class SealBroken(StorageError):
    """A sealed envelope is malformed, or fails authentication for this request ID."""

    def __init__(self, request_id: str, reason: str) -> None:
        super().__init__(f"sealed inputs of {request_id!r} cannot be opened: {reason}")
        self.request_id = request_id
        self.reason = reason


class InputSealer:
    """Encrypts and decrypts retained raw inputs with the keyring's AEAD keys."""

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring
        active = keyring.active("aead")
        self._active_id = active.key_id.encode()
        self._active = AESGCM(active.secret)
        self._openers: dict[str, AESGCM] = {}

    @property
    def active_key_id(self) -> str:
        """Id of the key new envelopes are sealed with."""
        return self._active_id.decode()

    def seal(self, plaintext: bytes, *, request_id: str) -> bytes:
        """Encrypt under the active key."""
        nonce = os.urandom(_NONCE_BYTES)
        ciphertext = self._active.encrypt(nonce, plaintext, request_id.encode())
        header = bytes((_VERSION, len(self._active_id))) + self._active_id
        return header + nonce + ciphertext

    def key_id_of(self, envelope: bytes) -> str:
        """Return the id of the key that sealed an envelope."""
        if len(envelope) < 2 or envelope[0] != _VERSION:
            raise SealBroken("?", "unknown envelope version")
        return envelope[2 : 2 + envelope[1]].decode()

    def open(self, envelope: bytes, *, request_id: str) -> bytes:
        """Decrypt with whichever non-retired key sealed it."""
        if len(envelope) < 2 or envelope[0] != _VERSION:
            raise SealBroken(request_id, "unknown envelope version")
        id_len = envelope[1]
        key_id = envelope[2 : 2 + id_len].decode()
        body = envelope[2 + id_len :]
        opener = self._openers.get(key_id)
        if opener is None:
            opener = AESGCM(self._keyring.for_decryption(key_id).secret)
            self._openers[key_id] = opener
        try:
            return opener.decrypt(body[:_NONCE_BYTES], body[_NONCE_BYTES:], request_id.encode())
        except InvalidTag as exc:
            raise SealBroken(request_id, "authentication failed") from exc
