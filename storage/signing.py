"""Ed25519 signatures over a version's `manifest.json`.

The signature lives beside the manifest as `manifest.sig`, a UTF-8 JSON object::

    {"format": "whylens-manifest-sig/1",
     "algorithm": "ed25519",
     "key_id": "sha256:<64 hex digits>",
     "signature": "<base64 of the 64-byte Ed25519 signature>"}

- The signature covers the exact bytes of `manifest.json` as stored (no
  canonicalisation), so any byte change refuses the version. The manifest in turn
  holds the sha256 of every file, so the signature transitively covers them.
- `key_id` is the sha256 of the raw 32-byte public key. It only selects which trusted
  key to try; it is not itself trusted.
- Keys are PEM: private keys PKCS#8 without a password, public keys
  SubjectPublicKeyInfo (what `openssl genpkey -algorithm ed25519` and
  `openssl pkey -pubout` produce).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from storage.errors import SignatureInvalid, SigningKeyInvalid

SIGNATURE_FORMAT = "whylens-manifest-sig/1"
_ALGORITHM = "ed25519"
_SIGNATURE_BYTES = 64


class SigningKeyPair(NamedTuple):
    """A freshly generated key pair, both halves PEM-encoded."""

    private_pem: bytes
    public_pem: bytes


def generate_signing_key() -> SigningKeyPair:
    """Generate an Ed25519 key pair (PKCS#8 private PEM, SubjectPublicKeyInfo public PEM)."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return SigningKeyPair(private_pem, public_pem)


def key_fingerprint(public_key_pem: bytes) -> str:
    """Return the `key_id` of a public key: `sha256:` + hex digest of the raw key."""
    return _fingerprint(load_public_key(public_key_pem))


def load_public_key(public_key_pem: bytes) -> Ed25519PublicKey:
    """Parse a PEM public key; raise `SigningKeyInvalid` unless it is Ed25519."""
    try:
        key = serialization.load_pem_public_key(public_key_pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise SigningKeyInvalid(f"not a PEM public key ({exc})") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyInvalid(f"expected an Ed25519 public key, got {type(key).__name__}")
    return key


def sign_manifest(manifest_bytes: bytes, private_key_pem: bytes) -> bytes:
    """Return the `manifest.sig` document for these exact manifest bytes."""
    try:
        key = serialization.load_pem_private_key(private_key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # The exception text never contains key material, only the parse failure.
        raise SigningKeyInvalid(f"not an unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyInvalid(f"expected an Ed25519 private key, got {type(key).__name__}")
    document = {
        "format": SIGNATURE_FORMAT,
        "algorithm": _ALGORITHM,
        "key_id": _fingerprint(key.public_key()),
        "signature": base64.b64encode(key.sign(manifest_bytes)).decode("ascii"),
    }
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


def verify_manifest(
    manifest_bytes: bytes,
    signature: bytes,
    trusted_public_keys_pem: Sequence[bytes],
    *,
    key: str = "manifest.json",
) -> str:
    """Check `signature` (a `manifest.sig` document) against the trusted keys.

    Returns the `key_id` of the key that verified. Raises `SignatureInvalid` (naming
    `key`) when the document is malformed, made by an untrusted key, or does not match;
    `SigningKeyInvalid` when a trusted key cannot be parsed.
    """
    return verify_with_keys(
        manifest_bytes, signature, index_public_keys(trusted_public_keys_pem), key=key
    )


def verify_with_keys(
    manifest_bytes: bytes,
    signature: bytes,
    trusted: dict[str, Ed25519PublicKey],
    *,
    key: str = "manifest.json",
) -> str:
    """Like `verify_manifest`, with keys already parsed and indexed by `key_id`."""
    if not trusted:
        raise SignatureInvalid(key, "no trusted public keys are configured")
    key_id, raw = _parse_document(signature, key=key)
    public = trusted.get(key_id)
    if public is None:
        raise SignatureInvalid(key, f"signed by {key_id}, which is not a trusted key")
    try:
        public.verify(raw, manifest_bytes)
    except InvalidSignature as exc:
        raise SignatureInvalid(key, f"signature by {key_id} does not match the manifest") from exc
    return key_id


def index_public_keys(public_keys_pem: Sequence[bytes]) -> dict[str, Ed25519PublicKey]:
    """Parse trusted PEM keys into a `key_id` → key table (raises `SigningKeyInvalid`)."""
    return {_fingerprint(k): k for k in map(load_public_key, public_keys_pem)}


def _parse_document(signature: bytes, *, key: str) -> tuple[str, bytes]:
    try:
        document = json.loads(signature.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise SignatureInvalid(key, "not a JSON signature document") from exc
    if not isinstance(document, dict):
        raise SignatureInvalid(key, "not a JSON object")
    if document.get("format") != SIGNATURE_FORMAT or document.get("algorithm") != _ALGORITHM:
        raise SignatureInvalid(
            key, f"unsupported format/algorithm (expected {SIGNATURE_FORMAT}, {_ALGORITHM})"
        )
    key_id, encoded = document.get("key_id"), document.get("signature")
    if not isinstance(key_id, str) or not isinstance(encoded, str):
        raise SignatureInvalid(key, "key_id and signature must be strings")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureInvalid(key, "signature is not valid base64") from exc
    if len(raw) != _SIGNATURE_BYTES:
        raise SignatureInvalid(key, f"signature must be {_SIGNATURE_BYTES} bytes, got {len(raw)}")
    return key_id, raw


def _fingerprint(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()
