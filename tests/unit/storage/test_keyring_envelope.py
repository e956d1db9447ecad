"""Envelope mode: keyring secrets wrapped by a master key (a KMS stand-in)."""

from __future__ import annotations

import base64
import secrets

import pytest
import yaml

from storage.crypto import InputSealer
from storage.keyring import (
    KeyringInvalid,
    keyring_document,
    new_keyring_document,
    parse_keyring,
    parse_master_key,
    rotate_keyring,
)


def master() -> bytes:
    return secrets.token_bytes(32)


def test_a_wrapped_keyring_holds_no_secret_and_opens_only_with_its_master_key() -> None:
    ring = parse_keyring(new_keyring_document(), source="plain")
    key = master()
    wrapped = keyring_document(ring, master_key=key)
    entries = yaml.safe_load(wrapped)["keys"]
    assert all("secret" not in e and "wrapped" in e for e in entries)
    for entry in ring.entries:
        assert base64.b64encode(entry.secret).decode() not in wrapped
    assert parse_keyring(wrapped, source="w", master_key=key) == ring
    with pytest.raises(KeyringInvalid, match="WHYLENS_KEYRING_MASTER_KEY"):
        parse_keyring(wrapped, source="w")
    with pytest.raises(KeyringInvalid, match="does not unwrap"):
        parse_keyring(wrapped, source="w", master_key=master())


def test_a_wrapped_secret_moved_to_another_entry_does_not_unwrap() -> None:
    key = master()
    ring = parse_keyring(new_keyring_document(), source="plain")
    doc = yaml.safe_load(keyring_document(ring, master_key=key))
    doc["keys"][0]["wrapped"], doc["keys"][1]["wrapped"] = (doc["keys"][1]["wrapped"],
                                                            doc["keys"][0]["wrapped"])
    with pytest.raises(KeyringInvalid, match="does not unwrap"):
        parse_keyring(yaml.safe_dump(doc), source="swapped", master_key=key)


def test_rotation_keeps_working_under_a_master_key() -> None:
    key = master()
    ring = parse_keyring(new_keyring_document(), source="plain")
    envelope = InputSealer(ring).seal(b"raw", request_id="r")
    rotated, _ = rotate_keyring(ring, ("aead",))
    reread = parse_keyring(keyring_document(rotated, master_key=key), source="w",
                           master_key=key)
    assert InputSealer(reread).open(envelope, request_id="r") == b"raw"


@pytest.mark.parametrize("encoded", ["not base64!", base64.b64encode(b"short").decode()])
def test_a_malformed_master_key_is_refused(encoded: str) -> None:
    with pytest.raises(KeyringInvalid):
        parse_master_key(encoded)
