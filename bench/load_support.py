"""Pieces of the load benchmark: the published model, service processes, the load client."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import lightgbm as lgb
import redis

from bench.common import free_port, scratch_dir
from service.demo.credit_data import FEATURES_YAML, make_applications
from service.publishing import PublishRequest, promote, publish_from_files
from service.settings import Settings
from storage.keyring import create_keyring_file

ROOT = Path(__file__).resolve().parents[1]
LABEL = "defaulted"


@dataclass(frozen=True, slots=True)
class Deployment:
    """The published model, keyring and scratch folder every process of a run shares."""

    root: Path
    artifacts: Path
    keyring: Path
    rows: list[dict[str, Any]]


def publish_model() -> Deployment:
    """Train the demo credit model (LightGBM, 100 trees) and publish it."""
    root = scratch_dir()
    frame = make_applications(5000, seed=11)
    model = lgb.LGBMClassifier(n_estimators=100, num_leaves=31, random_state=0, verbose=-1)
    model.fit(frame.drop(columns=[LABEL]), frame[LABEL])
    model.booster_.save_model(str(root / "credit.txt"))
    frame.to_parquet(root / "train.parquet")
    (root / "FEATURES.yaml").write_text(FEATURES_YAML, encoding="utf-8")
    settings = Settings(data_dir=root / "publish", auth="off", artifacts=str(root / "artifacts"))
    asyncio.run(publish_from_files(settings, PublishRequest(
        name="credit", version="1", model_path=root / "credit.txt",
        train_path=root / "train.parquet", label=LABEL, features_path=root / "FEATURES.yaml")))
    asyncio.run(promote(settings, "credit", "1", "production"))
    create_keyring_file(root / "keyring.yaml")
    rows = []
    for _, row in frame.drop(columns=[LABEL]).head(2000).iterrows():
        rows.append({str(k): (None if isinstance(v, float) and math.isnan(v)
                              else v.item() if hasattr(v, "item") else v)
                     for k, v in row.items()})
    return Deployment(root, root / "artifacts", root / "keyring.yaml", rows)


def base_env(deployment: Deployment, redis_url: str, prefix: str) -> dict[str, str]:
    """Settings every process of one scenario shares."""
    return {"WHYLENS_TRACES": redis_url, "WHYLENS_REDIS_KEY_PREFIX": prefix,
            "WHYLENS_KEYRING": str(deployment.keyring),
            "WHYLENS_ARTIFACTS": str(deployment.artifacts), "WHYLENS_AUTH": "off",
            "WHYLENS_LOG_LEVEL": "WARNING", "WHYLENS_LOG_FORMAT": "json",
            "WHYLENS_SAMPLING__RATE": "0.05", "WHYLENS_QUEUE__CLAIM_IDLE_MS": "5000",
            "WHYLENS_QUEUE__STATS_INTERVAL_S": "1"}


@dataclass
class Processes:
    """Service and worker subprocesses of one scenario."""

    root: Path
    servers: list[str] = field(default_factory=list)
    server_pids: list[int] = field(default_factory=list)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    worker_metrics: list[str] = field(default_factory=list)
    _all: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def serve(self, env: dict[str, str], name: str) -> None:
        """Start `whylens serve` on a free port (its own data and spool folders)."""
        port = free_port()
        own = {**env, "WHYLENS_DATA_DIR": str(self.root / name),
               "WHYLENS_SPOOL__DIR": str(self.root / name / "spool")}
        process = self._start(own, name, "serve", "--port", str(port))
        self.servers.append(f"http://127.0.0.1:{port}")
        self.server_pids.append(process.pid)

    def worker(self, env: dict[str, str], name: str) -> None:
        """Start `whylens worker` with its /metrics on a free port."""
        own = {**env, "WHYLENS_DATA_DIR": str(self.root / name)}
        port = free_port()
        self.workers.append(self._start(own, name, "worker", "--consumer", name,
                                        "--no-archive", "--metrics-port", str(port)))
        self.worker_metrics.append(f"http://127.0.0.1:{port}/metrics")

    def _start(self, env: dict[str, str], name: str, *args: str) -> subprocess.Popen[bytes]:
        with open(self.root / f"{name}.log", "ab") as log:
            process = subprocess.Popen([sys.executable, "-m", "service.cli", *args],
                                       env={**os.environ, **env}, cwd=ROOT, stdout=log,
                                       stderr=log)
        self._all.append(process)
        return process

    def wait_ready(self, timeout_s: float = 240) -> None:
        """Wait until every server answers /readyz and every worker logged its start."""
        deadline = time.monotonic() + timeout_s
        pending = {base + "/readyz" for base in self.servers} | set(self.worker_metrics)
        while pending and time.monotonic() < deadline:
            for url in list(pending):
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url, timeout=2).status_code == 200:
                        pending.discard(url)
            self._check_alive()
            time.sleep(0.3)
        if pending:
            raise RuntimeError(f"processes not ready; logs in {self.root}")

    def _check_alive(self) -> None:
        for process in self._all:
            if process.poll() is not None and process.returncode != -signal.SIGKILL:
                raise RuntimeError(f"a process exited early ({process.args}); logs in "
                                   f"{self.root}")

    def stop(self) -> None:
        """SIGTERM everything, SIGKILL what does not exit."""
        for process in self._all:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self._all:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


@dataclass
class LoadResult:
    """What the load client saw."""

    started: float
    ended: float
    ingest: list[tuple[float, float, int]] = field(default_factory=list)
    """(completion time, latency s, status)."""
    sampled: list[str] = field(default_factory=list)

    def rate(self, since: float, until: float) -> float:
        """Accepted records per second completed in [since, until)."""
        done = sum(1 for t, _, status in self.ingest if since <= t < until and status == 200)
        return done / max(until - since, 1e-9)


async def drive_ingest(servers: list[str], rows: list[dict[str, Any]], *, prefix: str,
                       seconds: float, concurrency: int,
                       context: dict[str, str] | None = None) -> LoadResult:
    """Post single records round-robin over the servers for `seconds` (closed loop)."""
    result = LoadResult(time.perf_counter(), 0.0)
    counter = itertools.count()
    deadline = result.started + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def user() -> None:
            while time.perf_counter() < deadline:
                n = next(counter)
                record = {"request_id": f"{prefix}-{n}", "model": "credit",
                          "features": rows[n % len(rows)],
                          "prediction": {"score": 0.3, "threshold": 0.5},
                          "context": context or {}}
                started = time.perf_counter()
                try:
                    answer = await client.post(f"{servers[n % len(servers)]}/v1/predictions",
                                               json=record)
                    status = answer.status_code
                    if status == 200 and answer.json()["sampled"]:
                        result.sampled.append(record["request_id"])
                except httpx.HTTPError:
                    status = 0
                now = time.perf_counter()
                result.ingest.append((now, now - started, status))

        await asyncio.gather(*(user() for _ in range(concurrency)))
    result.ended = time.perf_counter()
    return result


async def drive_reads(servers: list[str], ids: list[str], *,
                      concurrency: int) -> tuple[list[float], int]:
    """GET each trace once; return latencies of 200 answers and how many were not 200."""
    latencies: list[float] = []
    misses = 0
    queue = list(ids)
    async with httpx.AsyncClient(timeout=30) as client:

        async def reader(offset: int) -> None:
            nonlocal misses
            while queue:
                rid = queue.pop()
                started = time.perf_counter()
                answer = await client.get(f"{servers[offset % len(servers)]}/v1/traces/{rid}")
                if answer.status_code == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    misses += 1

        await asyncio.gather(*(reader(i) for i in range(concurrency)))
    return latencies, misses


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU seconds used so far by these processes (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def redis_bytes(redis_url: str, prefix: str, sample: int = 200) -> dict[str, float]:
    """Mean MEMORY USAGE of record values, trace values and lookups of one prefix."""
    client = redis.Redis.from_url(redis_url)
    out: dict[str, float] = {}
    try:
        for kind, pattern in (("record", f"{prefix}:{{credit}}:r:*"),
                              ("trace", f"{prefix}:{{credit}}:t:*"),
                              ("sealed", f"{prefix}:{{credit}}:s:*"),
                              ("lookup", f"{prefix}:rid:*")):
            keys = list(itertools.islice(client.scan_iter(pattern, count=1000), sample))
            sizes = [client.memory_usage(key, samples=0) or 0 for key in keys]
            out[kind] = sum(sizes) / len(sizes) if sizes else float("nan")
        index = f"{prefix}:{{credit}}:ix:all"
        members = client.zcard(index)
        out["trace_index_entry"] = ((client.memory_usage(index, samples=0) or 0) / members
                                    if members else float("nan"))
    finally:
        client.close()
    return out


@contextlib.contextmanager
def scenario(deployment: Deployment, name: str) -> Iterator[Processes]:
    """A folder and process group for one scenario, stopped at the end."""
    processes = Processes(deployment.root / name)
    processes.root.mkdir(parents=True, exist_ok=True)
    try:
        yield processes
    finally:
        processes.stop()
