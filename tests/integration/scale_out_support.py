"""Shared pieces of the scale-out tests: a published model, records, Redis cleanup, logs."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import orjson
import pandas as pd
import redis

from service.demo.credit_data import FEATURES_YAML, make_applications
from service.publishing import PublishRequest, promote, publish_from_files
from service.runtime import Runtime
from service.scale_out import WORKER_GROUP
from service.settings import Settings
from service.worker.archive_loop import Archiver, ArchiverOptions
from storage.archive.writer import ArchiveWriter, Backoff
from storage.keyring import create_keyring_file
from storage.queue import StreamKeys

LABEL = "defaulted"
ROOT = Path(__file__).resolve().parents[2]
SECRET_ZIP = "99999-not-for-disk"
"""A zip code (masked by hashing) that must never appear in stored or spooled bytes."""


@dataclass(frozen=True, slots=True)
class CreditModel:
    """The demo credit model published to a local artifact folder, and its keyring."""

    artifacts: Path
    keyring: Path
    frame: pd.DataFrame


async def publish_credit_model(root: Path) -> CreditModel:
    """Train and publish `credit` version 1 (alias production)."""
    frame = make_applications(3000, seed=5)
    model = lgb.LGBMClassifier(n_estimators=30, num_leaves=15, random_state=0, verbose=-1)
    model.fit(frame.drop(columns=[LABEL]), frame[LABEL])
    model_path = root / "credit.txt"
    model.booster_.save_model(str(model_path))
    train = root / "train.parquet"
    frame.to_parquet(train)
    features = root / "FEATURES.yaml"
    features.write_text(FEATURES_YAML, encoding="utf-8")
    settings = Settings(data_dir=root / "publish", auth="off", artifacts=str(root / "artifacts"))
    await publish_from_files(settings, PublishRequest(
        name="credit", version="1", model_path=model_path, train_path=train, label=LABEL,
        features_path=features))
    await promote(settings, "credit", "1", "production")
    keyring = root / "keyring.yaml"
    create_keyring_file(keyring)
    return CreditModel(root / "artifacts", keyring, frame)


def record_from(frame: pd.DataFrame, i: int, request_id: str, **extra: Any) -> dict[str, Any]:
    """A prediction record from row i (NaN → null); zip_code is `SECRET_ZIP` on odd rows."""
    row = frame.drop(columns=[LABEL]).iloc[i]
    features: dict[str, Any] = {}
    for name, value in row.items():
        if isinstance(value, float) and math.isnan(value):
            features[str(name)] = None
        else:
            features[str(name)] = value.item() if hasattr(value, "item") else value
    if i % 2:
        features["zip_code"] = SECRET_ZIP
    record: dict[str, Any] = {"request_id": request_id, "model": "credit",
                              "features": features,
                              "prediction": {"score": 0.5, "threshold": 0.5},
                              "timestamp": "2026-11-25T18:00:00Z"}
    record.update(extra)
    return record


async def bounded(awaitable: Awaitable[object], *, seconds: float, what: str) -> None:
    """Await with a deadline; on timeout print every task's stack (a hang, diagnosed)."""
    try:
        await asyncio.wait_for(awaitable, timeout=seconds)
    except TimeoutError:
        for task in asyncio.all_tasks():
            print(f"--- task {task.get_name()}: {task.get_coro()!r}", file=sys.stderr)
            task.print_stack(file=sys.stderr)
        raise AssertionError(f"{what} took more than {seconds} s") from None


def clear_prefix(redis_url: str, prefix: str) -> None:
    """Delete every key of a test's prefix."""
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"{prefix}*", count=1000):
        client.delete(key)
    client.close()


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def json_logs(path: Path) -> list[dict[str, Any]]:
    """The JSON log lines of a file (other lines, e.g. library noise, are skipped)."""
    lines = []
    for raw in path.read_bytes().splitlines():
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(parsed, dict):
            lines.append(parsed)
    return lines


def start_worker(env: Mapping[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    """Run `whylens worker` in a subprocess, its JSON logs going to `log`."""
    handle = open(log, "ab")  # noqa: SIM115 - the child owns it
    try:
        return subprocess.Popen([sys.executable, "-m", "service.cli", "worker", *args],
                                env={**os.environ, **env}, cwd=ROOT, stdout=handle,
                                stderr=handle)
    finally:
        handle.close()


def wait_for(condition: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    """Poll until `condition()` holds; fail naming `what` after the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def wait_exit(process: subprocess.Popen[bytes], log: Path, *, timeout_s: float) -> int:
    """The exit code; a worker still running after the timeout fails the test with its
    thread stacks (SIGUSR1, faulthandler) and the end of its log."""
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGUSR1)
        time.sleep(2)
        tail = log.read_bytes()[-6000:].decode(errors="replace")
        raise AssertionError(f"worker still running {timeout_s} s after SIGTERM:\n{tail}") \
            from None


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it does not exit within 20 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def archive_all(runtime: Runtime) -> Archiver:
    """Run an archiver until the archive feed is drained; return it (for its metrics)."""
    scale_out = runtime.scale_out
    assert scale_out is not None and scale_out.archive_feed is not None
    assert scale_out.archive_store is not None and scale_out.archive_index is not None
    metrics = scale_out.metrics
    writer = ArchiveWriter(scale_out.archive_store, scale_out.archive_index,
                           backoff=Backoff(0.05, 0.2),
                           on_retry=lambda _what, _exc: metrics.archive_retries.inc())
    archiver = Archiver(runtime, scale_out.archive_feed, writer, metrics, consumer="arch",
                        options=ArchiverOptions(1000, 0.3, 100, 60_000))
    stop = asyncio.Event()
    task = asyncio.create_task(archiver.run(stop))
    try:
        for _ in range(600):
            stats = await scale_out.archive_feed.stats()
            if stats.length and stats.backlog == 0:
                return archiver
            await asyncio.sleep(0.05)
        raise AssertionError("the archive feed was not drained")
    finally:
        stop.set()
        await task


def held_by(client: redis.Redis, keys: StreamKeys, consumer: str) -> list[str]:
    """Entry IDs of the explain stream pending on `consumer`."""
    pending = client.xpending_range(keys.stream, WORKER_GROUP, "-", "+", 10_000, consumer)
    return [entry["message_id"].decode() for entry in pending]


def stream_idle(client: redis.Redis, keys: StreamKeys) -> bool:
    """True when the workers' group has nothing undelivered and nothing pending."""
    lag = next((int(group["lag"] or 0) for group in client.xinfo_groups(keys.stream)
                if group["name"].decode() == WORKER_GROUP), -1)
    return lag == 0 and client.xpending(keys.stream, WORKER_GROUP)["pending"] == 0
