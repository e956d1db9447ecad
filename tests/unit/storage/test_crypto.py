from __future__ import annotations

import base64

import pytest

from storage.crypto import InputSealer, SealBroken
from storage.keyring import KeyringInvalid, KeyUnknown, new_keyring_document, parse_keyring


def _ring_with(extra: str = "") -> str:
    return new_keyring_document() + extra


def test_sealed_inputs_open_only_with_their_request_id() -> None:
    sealer = InputSealer(parse_keyring(new_keyring_document(), source="t"))
    envelope = sealer.seal(b'{"zip_code": "94110"}', request_id="r-1")
    assert b"94110" not in envelope
    assert sealer.open(envelope, request_id="r-1") == b'{"zip_code": "94110"}'
    with pytest.raises(SealBroken):
        sealer.open(envelope, request_id="r-2")


def test_tampered_ciphertext_is_refused() -> None:
    sealer = InputSealer(parse_keyring(new_keyring_document(), source="t"))
    envelope = bytearray(sealer.seal(b"secret", request_id="r"))
    envelope[-1] ^= 1
    with pytest.raises(SealBroken):
        sealer.open(bytes(envelope), request_id="r")


def test_old_key_still_decrypts_after_rotation_until_retired() -> None:
    old_doc = new_keyring_document()
    old_ring = parse_keyring(old_doc, source="t")
    envelope = InputSealer(old_ring).seal(b"x", request_id="r")
    old_id = old_ring.active("aead").key_id
    new_secret = base64.b64encode(b"\x01" * 32).decode()
    rotated = old_doc.replace("status: active\n  created", "status: decrypt\n  created", 1)
    rotated += (f"- id: aead-new\n  kind: aead\n  status: active\n  created: now\n"
                f"  secret: {new_secret}\n")
    ring = parse_keyring(rotated, source="t")
    sealer = InputSealer(ring)
    assert ring.active("aead").key_id == "aead-new"
    assert sealer.key_id_of(envelope) == old_id
    assert sealer.open(envelope, request_id="r") == b"x"
    retired = parse_keyring(rotated.replace("status: decrypt", "status: retired"), source="t")
    with pytest.raises(KeyUnknown):
        InputSealer(retired).open(envelope, request_id="r")


@pytest.mark.parametrize(
    "document",
    ["keys: 3", "not: a keyring", "keys:\n- {id: a, kind: aead, secret: AAAA}",
     "keys:\n- {id: a, kind: aead, status: active, secret: '" + "A" * 44 + "'}"],
)
def test_malformed_keyrings_are_refused(document: str) -> None:
    with pytest.raises(KeyringInvalid):
        parse_keyring(document, source="t")


def test_key_material_is_not_in_repr() -> None:
    ring = parse_keyring(new_keyring_document(), source="t")
    entry = ring.active("hmac")
    assert base64.b64encode(entry.secret).decode() not in repr(ring)
    assert repr(entry.secret) not in repr(entry)
