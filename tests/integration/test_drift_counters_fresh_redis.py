"""Drift counters on a Redis that has never seen the counter script (NOSCRIPT path).

A throwaway redis-server on its own port: the shared server's script cache cannot be
emptied without disturbing everyone else using it.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from storage.drift.records import BucketRef, WindowIncrement, WindowKey
from storage.drift_factory import open_drift_store
from tests.integration.scale_out_support import free_port, stop_process, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def fresh_redis_url(tmp_path: Path) -> Iterator[str]:
    server = shutil.which("redis-server")
    assert server is not None, "redis-server is not installed"
    port = free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--dir", str(tmp_path), "--daemonize", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    try:
        wait_for(answers, timeout_s=20, what="redis-server to answer")
        yield url
    finally:
        client.close()
        stop_process(process)


async def test_first_counts_on_a_fresh_server_load_the_script_and_keep_every_digit(
        fresh_redis_url: str) -> None:
    store = open_drift_store(fresh_redis_url, key_prefix="wl", retention_s=3600)
    now = time.time_ns() // 1_000_000
    bucket = BucketRef(300, now // 300_000 * 300_000)
    key = WindowKey("credit", "1")
    try:
        await store.add_window_counts([WindowIncrement(
            key, bucket, counts={"n": 2, "0:3": 1}, sums={"0:sum": 1234567.891234567},
            maxima={"t": now})])
        await store.add_window_counts([WindowIncrement(
            key, bucket, counts={"n": 1}, sums={"0:sum": 0.000000123456789},
            maxima={"t": now - 5})])
        merged = await store.read_window_counts(key, [bucket])
    finally:
        await store.close()
    assert merged["n"] == 3.0 and merged["0:3"] == 1.0
    assert merged["t"] == float(now)
    assert merged["0:sum"] == pytest.approx(1234567.891234567 + 0.000000123456789, rel=1e-15)
