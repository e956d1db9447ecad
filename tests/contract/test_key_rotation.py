"""Key rotation on both record stores: old keys decrypt, reencrypt moves, retire is safe."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
import redis.asyncio

from storage.crypto import InputSealer
from storage.errors import StoreUnavailable
from storage.keyring import (
    Keyring,
    KeyUnknown,
    activate_key,
    keyring_document,
    new_keyring_document,
    parse_keyring,
    retire_key,
    rotate_keyring,
)
from storage.records import SealedPage, SealedUpdate, StoredRecord
from storage.reencrypt import count_sealed_by_key, reencrypt_sealed_inputs
from storage.trace_factory import open_trace_store
from storage.traces.redis import RedisTraceStore
from storage.traces.sqlite import SqliteTraceStore

Store = SqliteTraceStore | RedisTraceStore

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("redis", id="redis", marks=pytest.mark.integration),
]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path,
                unique_prefix: str) -> AsyncIterator[Store]:
    url = (str(request.getfixturevalue("redis_url")) if request.param == "redis"
           else f"sqlite:///{tmp_path}/traces.db")
    opened = open_trace_store(url, key_prefix=unique_prefix, trace_ttl_s=3600,
                              record_ttl_s=3600)
    yield opened
    await opened.close()
    if request.param == "redis":
        client = redis.asyncio.Redis.from_url(url)
        keys = [k async for k in client.scan_iter(match=f"{unique_prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def fresh_keyring() -> Keyring:
    return parse_keyring(new_keyring_document(), source="test")


def sealed_record(sealer: InputSealer, request_id: str) -> StoredRecord:
    now = time.time_ns() // 1_000_000
    return StoredRecord(request_id=request_id, model="credit", version="1", event_ms=now,
                        received_ms=now, sampled=False, reason=None, body=b"{}",
                        sealed_inputs=sealer.seal(f"inputs of {request_id}".encode(),
                                                  request_id=request_id))


async def opened_inputs(store: Store, sealer: InputSealer, ids: list[str]) -> list[bytes]:
    out = []
    for request_id in ids:
        record = await store.get_record(request_id)
        assert record is not None
        out.append(sealer.open(record.sealed_inputs, request_id=request_id))
    return out


async def test_rotate_reencrypt_retire_keeps_every_record_readable(
        store: Store, tmp_path: Path) -> None:
    ring1 = fresh_keyring()
    key1 = ring1.active("aead").key_id
    old_ids = [f"old-{i}" for i in range(120)]
    await store.add_records([sealed_record(InputSealer(ring1), r) for r in old_ids])

    ring2, [added] = rotate_keyring(ring1, ("aead",))
    ring2 = parse_keyring(keyring_document(ring2), source="rotated")  # survives a round trip
    sealer2 = InputSealer(ring2)
    assert sealer2.active_key_id == added.key_id != key1
    assert ring2.active("hmac") == ring1.active("hmac")  # pseudonyms stay stable
    new_ids = [f"new-{i}" for i in range(30)]
    await store.add_records([sealed_record(sealer2, r) for r in new_ids])
    expected = [f"inputs of {r}".encode() for r in old_ids + new_ids]
    assert await opened_inputs(store, sealer2, old_ids + new_ids) == expected
    assert await count_sealed_by_key(store, sealer2, key1) == len(old_ids)

    checkpoint = tmp_path / "reencrypt.cursor"
    report = await reencrypt_sealed_inputs(store, sealer2, checkpoint=checkpoint, batch=100)
    assert (report.reencrypted, report.unreadable) == (len(old_ids), 0)
    assert report.scanned >= len(old_ids) + len(new_ids)
    assert not checkpoint.exists()
    assert await count_sealed_by_key(store, sealer2, key1) == 0

    ring3 = retire_key(ring2, key1)
    sealer3 = InputSealer(ring3)
    assert await opened_inputs(store, sealer3, old_ids + new_ids) == expected
    again = await reencrypt_sealed_inputs(store, sealer3)
    assert again.reencrypted == 0  # idempotent: a second pass finds nothing to move


async def test_a_retired_key_no_longer_opens_what_it_sealed(store: Store) -> None:
    ring1 = fresh_keyring()
    await store.add_records([sealed_record(InputSealer(ring1), "r1")])
    ring2, _ = rotate_keyring(ring1, ("aead",))
    retired = retire_key(ring2, ring1.active("aead").key_id)
    record = await store.get_record("r1")
    assert record is not None
    with pytest.raises(KeyUnknown):
        InputSealer(retired).open(record.sealed_inputs, request_id="r1")
    report = await reencrypt_sealed_inputs(store, InputSealer(retired))
    assert report.unreadable == 1


def test_staged_keys_decrypt_before_they_are_activated() -> None:
    ring1 = fresh_keyring()
    staged, [added] = rotate_keyring(ring1, ("aead",), stage=True)
    assert added.status == "decrypt"
    assert staged.active("aead") == ring1.active("aead")
    # A replica already on the activated ring seals with the new key; one still on the
    # staged ring opens it.
    activated = activate_key(staged, added.key_id)
    envelope = InputSealer(activated).seal(b"x", request_id="r")
    assert InputSealer(staged).open(envelope, request_id="r") == b"x"
    assert activated.active("aead").key_id == added.key_id
    statuses = {e.key_id: e.status for e in activated.entries}
    assert statuses[ring1.active("aead").key_id] == "decrypt"


class CrashingLog:
    """The real store's sealed-input log, failing on the scan after `pages` pages that held
    inputs (a Redis SCAN page can come back empty when the database holds other keys)."""

    def __init__(self, store: Store, pages: int) -> None:
        self.store = store
        self.pages = pages

    async def scan_sealed_inputs(self, cursor: str | None, *, limit: int) -> SealedPage:
        if self.pages == 0:
            raise StoreUnavailable("test", "the process died here")
        page = await self.store.scan_sealed_inputs(cursor, limit=limit)
        if page.items:
            self.pages -= 1
        return page

    async def replace_sealed_inputs(self, updates: Sequence[SealedUpdate]) -> int:
        return await self.store.replace_sealed_inputs(updates)


async def test_an_interrupted_reencrypt_resumes_from_its_checkpoint(
        store: Store, tmp_path: Path) -> None:
    ring1 = fresh_keyring()
    key1 = ring1.active("aead").key_id
    ids = [f"r-{i}" for i in range(150)]
    await store.add_records([sealed_record(InputSealer(ring1), r) for r in ids])
    ring2, _ = rotate_keyring(ring1, ("aead",))
    sealer2 = InputSealer(ring2)
    checkpoint = tmp_path / "reencrypt.cursor"
    with pytest.raises(StoreUnavailable):
        await reencrypt_sealed_inputs(CrashingLog(store, pages=2), sealer2,
                                      checkpoint=checkpoint, batch=20)
    assert checkpoint.exists()
    left = await count_sealed_by_key(store, sealer2, key1)
    assert 0 < left < len(ids)
    resumed = await reencrypt_sealed_inputs(store, sealer2, checkpoint=checkpoint, batch=20)
    # The resumed run starts at the saved cursor: it neither rescans from the start nor
    # misses what is left.
    assert resumed.reencrypted == left
    assert resumed.scanned < len(ids)
    assert not checkpoint.exists()
    assert await count_sealed_by_key(store, sealer2, key1) == 0
    retired = InputSealer(retire_key(ring2, key1))
    assert await opened_inputs(store, retired, ids) == [f"inputs of {r}".encode() for r in ids]
