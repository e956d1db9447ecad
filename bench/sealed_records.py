"""Cost of privacy on the write path, side by side with the bare minimum.

1. Sealing raw inputs: `InputSealer.seal` (AES-256-GCM, key id header, request ID as
   associated data) against `cryptography`'s AESGCM.encrypt alone.
2. Logging records on Redis: `RedisTraceStore.add_records` (idempotent, sealed inputs
   under their own TTL'd key through a Lua script) against a bare pipeline of the two
   `SET NX GET` a minimal idempotent log needs.

Run: `.venv/bin/python bench/sealed_records.py [redis://127.0.0.1:6379/0]` (make services).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
import uuid

import redis.asyncio
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from storage.crypto import InputSealer
from storage.keyring import new_keyring_document, parse_keyring
from storage.records import StoredRecord
from storage.trace_factory import open_trace_store

BATCH = 500
ROUNDS = 15
INPUTS = os.urandom(300)


def bench_sealing() -> None:
    sealer = InputSealer(parse_keyring(new_keyring_document(), source="bench"))
    bare = AESGCM(os.urandom(32))
    ids = [f"req-{i}" for i in range(20_000)]
    started = time.perf_counter()
    for rid in ids:
        sealer.seal(INPUTS, request_id=rid)
    ours = (time.perf_counter() - started) / len(ids)
    started = time.perf_counter()
    for rid in ids:
        bare.encrypt(os.urandom(12), INPUTS, rid.encode())
    peer = (time.perf_counter() - started) / len(ids)
    print(f"seal 300 B: InputSealer {ours * 1e6:.1f} µs, bare AESGCM {peer * 1e6:.1f} µs, "
          f"ratio {ours / peer:.2f}")


async def bench_record_log(url: str) -> None:
    prefix = f"wlbench-{uuid.uuid4().hex[:8]}"
    store = open_trace_store(url, key_prefix=prefix, trace_ttl_s=600, record_ttl_s=600)
    raw = redis.asyncio.Redis.from_url(url)
    body = os.urandom(400)

    def batch(tag: str) -> list[StoredRecord]:
        now = time.time_ns() // 1_000_000
        return [StoredRecord(request_id=f"{tag}-{i}", model="m", version="1", event_ms=now,
                             received_ms=now, sampled=False, reason=None, body=body,
                             sealed_inputs=INPUTS) for i in range(BATCH)]

    ours: list[float] = []
    peer: list[float] = []
    try:
        for round_ in range(ROUNDS):
            records = batch(f"o{round_}")
            started = time.perf_counter()
            await store.add_records(records)
            ours.append(time.perf_counter() - started)
            records = batch(f"p{round_}")
            started = time.perf_counter()
            pipe = raw.pipeline(transaction=False)
            for record in records:
                pipe.set(f"{prefix}:rid:{record.request_id}", b"m", nx=True, get=True, ex=600)
                pipe.set(f"{prefix}:{{m}}:r:{record.request_id}", body + INPUTS, nx=True,
                         get=True, ex=600)
            await pipe.execute()
            peer.append(time.perf_counter() - started)
    finally:
        keys = [k async for k in raw.scan_iter(match=f"{prefix}:*", count=5000)]
        for start in range(0, len(keys), 1000):
            await raw.delete(*keys[start: start + 1000])
        await store.close()
        await raw.aclose()
    a, b = statistics.median(ours), statistics.median(peer)
    print(f"add_records {BATCH}/batch on Redis: whylens {a * 1000:.1f} ms, bare pipeline "
          f"{b * 1000:.1f} ms, ratio {a / b:.2f} (median of {ROUNDS})")


if __name__ == "__main__":
    bench_sealing()
    asyncio.run(bench_record_log(sys.argv[1] if len(sys.argv) > 1
                                 else "redis://127.0.0.1:6379/0"))
