"""Load benchmark: one inline process vs several replicas plus 2 queue workers, same run.

Single-record ingest (closed loop, an asyncio httpx client) with 5 % of records sampled
for explanation, against the real Redis; p50/p99 of ingest and of GET /v1/traces/{id},
queue lag over time, and explanation throughput before and after one of the two workers
is killed (SIGKILL) half way. Everything runs on this machine: the client, Redis and the
service processes share its cores, so the figures are relative, not capacity numbers.

Run: .venv/bin/python bench/load.py [--seconds 30] [--concurrency 24] [--servers 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
import uuid
from dataclasses import dataclass, field

from bench.common import quantiles_ms, ratio
from bench.load_support import (
    Deployment,
    LoadResult,
    Processes,
    base_env,
    clear,
    drive_ingest,
    drive_reads,
    publish_model,
    redis_bytes,
    scenario,
)
from storage.queue import QueueStats, RedisStream, StreamKeys
from storage.redis_client import open_redis_client

READ_SAMPLE = 400


@dataclass
class Outcome:
    """One scenario's figures."""

    name: str
    load: LoadResult
    reads: list[float]
    read_misses: int
    queue: list[tuple[float, QueueStats]] = field(default_factory=list)
    kill_at: float | None = None
    drained_after_s: float | None = None


async def _watch(stream: RedisStream, samples: list[tuple[float, QueueStats]],
                 stop: asyncio.Event) -> None:
    while not stop.is_set():
        samples.append((time.perf_counter(), await stream.stats()))
        await asyncio.sleep(0.5)


async def _run_queue_load(processes: Processes, deployment: Deployment, prefix: str,
                          args: argparse.Namespace, outcome_name: str) -> Outcome:
    client = open_redis_client(args.redis_url)
    stream = RedisStream(client, StreamKeys.named(prefix, "explain"), group="workers",
                         max_length=1_000_000, dead_max_length=1000)
    samples: list[tuple[float, QueueStats]] = []
    stop = asyncio.Event()
    watcher = asyncio.create_task(_watch(stream, samples, stop))
    kill_at: list[float] = []

    async def kill_one_worker() -> None:
        await asyncio.sleep(args.seconds / 2)
        os.kill(processes.workers[0].pid, signal.SIGKILL)
        kill_at.append(time.perf_counter())

    killer = asyncio.create_task(kill_one_worker())
    load = await drive_ingest(processes.servers, deployment.rows, prefix=outcome_name,
                              seconds=args.seconds, concurrency=args.concurrency)
    await killer
    drained = None
    deadline = time.perf_counter() + 180
    while time.perf_counter() < deadline:
        if (await stream.stats()).backlog == 0:
            drained = time.perf_counter() - load.ended
            break
        await asyncio.sleep(0.5)
    stop.set()
    await watcher
    await client.aclose()
    reads, misses = await drive_reads(processes.servers, load.sampled[:READ_SAMPLE],
                                      concurrency=args.concurrency)
    return Outcome(outcome_name, load, reads, misses, samples, kill_at[0], drained)


def run_inline(deployment: Deployment, args: argparse.Namespace, prefix: str) -> Outcome:
    """One `whylens serve`, explaining sampled records in the request."""
    with scenario(deployment, "inline") as processes:
        processes.serve(base_env(deployment, args.redis_url, prefix), "s0")
        processes.wait_ready()
        load = asyncio.run(drive_ingest(processes.servers, deployment.rows, prefix="inline",
                                        seconds=args.seconds, concurrency=args.concurrency))
        reads, misses = asyncio.run(drive_reads(processes.servers, load.sampled[:READ_SAMPLE],
                                                concurrency=args.concurrency))
    return Outcome("inline", load, reads, misses)


def run_scale_out(deployment: Deployment, args: argparse.Namespace, prefix: str) -> Outcome:
    """Several replicas in queue mode and two workers; one worker killed half way."""
    env = {**base_env(deployment, args.redis_url, prefix), "WHYLENS_EXPLAIN_MODE": "queue"}
    with scenario(deployment, "scale-out") as processes:
        for i in range(args.servers):
            processes.serve(env, f"s{i}")
        for i in range(2):
            processes.worker(env, f"w{i}")
        processes.wait_ready()
        return asyncio.run(_run_queue_load(processes, deployment, prefix, args, "queue"))


def _phase_rates(outcome: Outcome) -> tuple[float, float, float, float]:
    """Ingest and explanation rates before and after the worker was killed."""
    assert outcome.kill_at is not None
    load, kill = outcome.load, outcome.kill_at
    ingest = (load.rate(load.started, kill), load.rate(kill, load.ended))

    def done_at(moment: float) -> float:
        before = [s for t, s in outcome.queue if t <= moment]
        stats = before[-1] if before else outcome.queue[0][1]
        return stats.length - stats.backlog

    first = (done_at(kill) - done_at(load.started)) / max(kill - load.started, 1e-9)
    second = (done_at(load.ended) - done_at(kill)) / max(load.ended - kill, 1e-9)
    return ingest[0], ingest[1], first, second


def report(inline: Outcome, queued: Outcome, args: argparse.Namespace,
           sizes: dict[str, float]) -> None:
    """Print the comparison."""
    print(f"\nload: {args.seconds:.0f} s per scenario, {args.concurrency} concurrent clients, "
          f"single-record POSTs, 5 % sampled; Redis {args.redis_url}")
    print(f"{'scenario':<24}{'ingest/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
          f"{'GET p50':>9}{'GET p99':>9}{'GET 404':>8}")
    for outcome, label in ((inline, "inline, 1 process"),
                           (queued, f"queue, {args.servers} proc + 2 wk")):
        load = outcome.load
        ok = [lat for _, lat, status in load.ingest if status == 200]
        p50, p99 = quantiles_ms(ok)
        g50, g99 = quantiles_ms(outcome.reads) if outcome.reads else (float("nan"),) * 2
        errors = sum(1 for _, _, status in load.ingest if status != 200)
        print(f"{label:<24}{load.rate(load.started, load.ended):>10.0f}{p50:>9.1f}{p99:>9.1f}"
              f"{errors:>8}{g50:>9.1f}{g99:>9.1f}{outcome.read_misses:>8}")
    rate_q = queued.load.rate(queued.load.started, queued.load.ended)
    rate_i = inline.load.rate(inline.load.started, inline.load.ended)
    print(f"ingest rate queue/inline: {ratio(rate_q, rate_i)}")
    before, after, explained_before, explained_after = _phase_rates(queued)
    lags = [s.backlog for _, s in queued.queue]
    ages = [s.oldest_undelivered_age_s for _, s in queued.queue]
    print(f"queue: ingest {before:.0f}/s with 2 workers, {after:.0f}/s after killing one; "
          f"explanations {explained_before:.1f}/s then {explained_after:.1f}/s; "
          f"max backlog {max(lags, default=0)} jobs, max lag {max(ages, default=0):.1f} s")
    drained = ("not within 180 s" if queued.drained_after_s is None
               else f"{queued.drained_after_s:.1f} s after the load stopped")
    print(f"backlog (incl. the killed worker's jobs, reclaimed after 5 s idle) drained "
          f"{drained}")
    print("Redis MEMORY USAGE per key (bytes): " + ", ".join(
        f"{name} {value:.0f}" for name, value in sizes.items()))


def main() -> None:
    """Run both scenarios and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=24)
    parser.add_argument("--servers", type=int, default=3)
    parser.add_argument("--redis-url", default=os.environ.get("WHYLENS_TEST_REDIS_URL",
                                                              "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    started = time.perf_counter()
    deployment = publish_model()
    run = uuid.uuid4().hex[:8]
    prefixes = (f"wlbench-{run}-inline", f"wlbench-{run}-queue")
    try:
        inline = run_inline(deployment, args, prefixes[0])
        sizes = redis_bytes(args.redis_url, prefixes[0])
        queued = run_scale_out(deployment, args, prefixes[1])
    finally:
        for prefix in prefixes:
            clear(args.redis_url, prefix)
    report(inline, queued, args, sizes)
    print(f"total wall time {time.perf_counter() - started:.0f} s; logs in {deployment.root}")


if __name__ == "__main__":
    main()
