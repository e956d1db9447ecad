"""Shared pieces of the benchmarks: the reference model, timing, a service subprocess."""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import lightgbm as lgb
import numpy as np
import pandas as pd
import redis
from sklearn.datasets import make_classification


def reference_data(n_rows: int = 50_000, n_features: int = 30, seed: int = 0) -> pd.DataFrame:
    """make_classification 50k x 30, as the issues specify."""
    X, y = make_classification(n_rows, n_features, n_informative=12, random_state=seed)
    frame = pd.DataFrame(X, columns=[f"f{i:02d}" for i in range(n_features)])
    frame["label"] = y
    return frame


def train_reference_model(frame: pd.DataFrame, *, n_estimators: int = 500,
                          num_leaves: int = 63, max_depth: int = -1) -> lgb.Booster:
    """The benchmark LightGBM binary model (500 trees, 63 leaves by default)."""
    model = lgb.LGBMClassifier(n_estimators=n_estimators, num_leaves=num_leaves,
                               max_depth=max_depth, learning_rate=0.05, random_state=0,
                               verbose=-1)
    model.fit(frame.drop(columns=["label"]), frame["label"])
    return model.booster_


def timed(fn: Callable[[], object]) -> float:
    """Seconds taken by one call."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def quantiles_ms(samples: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p99 * 1000


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_service(env: dict[str, str], *,
                    command: tuple[str, ...] = ("service.cli", "serve")) -> Iterator[str]:
    """Run `whylens serve` (or another module answering /readyz) on loopback; yield its URL."""
    port = free_port()
    full_env = {**os.environ, "WHYLENS_AUTH": "off", "WHYLENS_LOG_LEVEL": "WARNING", **env}
    process = subprocess.Popen(
        [sys.executable, "-m", *command, "--port", str(port)], env=full_env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(process.stderr.read().decode() if process.stderr else "died")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                    break
            time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)


def clear_prefix(redis_url: str, prefix: str) -> None:
    """Remove every key of a bench's namespace (`prefix:*`), a page at a time.

    Benches write records with the service's default retention (days); left behind, they
    fill a shared Redis.
    """
    client = redis.Redis.from_url(redis_url)
    try:
        keys = []
        for key in client.scan_iter(f"{prefix}:*", count=5000):
            keys.append(key)
            if len(keys) == 5000:
                client.unlink(*keys)
                keys.clear()
        if keys:
            client.unlink(*keys)
    finally:
        client.close()


def scratch_dir() -> Path:
    """A temporary folder kept for the run."""
    return Path(tempfile.mkdtemp(prefix="whylens-bench-"))


def ratio(ours: float, peer: float) -> str:
    """Format ours/peer."""
    return f"{ours / peer:.2f}x" if peer else "n/a"


def rows_of(frame: pd.DataFrame) -> list[dict[str, float]]:
    """Feature dicts (JSON-ready) of a frame without the label."""
    values = frame.drop(columns=["label"]).to_numpy(np.float64)
    names = [c for c in frame.columns if c != "label"]
    return [dict(zip(names, map(float, row), strict=True)) for row in values]
