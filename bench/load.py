"""Load benchmark: one inline process vs several replicas plus 2 queue workers, same run.

Steady phase (both scenarios): single-record ingest in a closed loop (asyncio httpx
client) with 5 % of records sampled for explanation, against the real Redis; p50/p99 of
ingest and of GET /v1/traces/{id}, CPU the service spent per record, and (queue) the lag
and one worker killed (SIGKILL) half way. Burst phase (queue): both workers paused while
records that are all sampled pile up, then resumed; the backlog drain rate with two
workers, and with one after the other is killed mid-drain (its jobs are reclaimed after
the 5 s idle timeout). Client, Redis and services share this machine's cores: the
figures are relative, not capacity numbers.

Run: .venv/bin/python -m bench.load [--seconds 30] [--concurrency 24] [--servers 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
import uuid
from dataclasses import dataclass, field

from bench.common import clear_prefix, quantiles_ms, ratio
from bench.load_support import (
    Deployment,
    LoadResult,
    Processes,
    base_env,
    cpu_seconds,
    drive_ingest,
    drive_reads,
    publish_model,
    redis_bytes,
    scenario,
)
from storage.queue import QueueStats, RedisStream, StreamKeys
from storage.redis_client import open_redis_client

READ_SAMPLE = 400
BURST_S = 10.0


@dataclass
class Outcome:
    """One scenario's figures."""

    name: str
    load: LoadResult
    reads: list[float]
    read_misses: int
    service_cpu_s: float
    queue: list[tuple[float, QueueStats]] = field(default_factory=list)
    kill_at: float | None = None
    drain: dict[str, float] = field(default_factory=dict)


async def _watch(stream: RedisStream, samples: list[tuple[float, QueueStats]],
                 stop: asyncio.Event) -> None:
    while not stop.is_set():
        samples.append((time.perf_counter(), await stream.stats()))
        await asyncio.sleep(0.5)


async def _wait_backlog(stream: RedisStream, at_most: int, timeout_s: float = 300) -> float:
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if (await stream.stats()).backlog <= at_most:
            return time.perf_counter()
        await asyncio.sleep(0.1)
    raise RuntimeError(f"backlog did not fall to {at_most} within {timeout_s} s")


async def _steady(processes: Processes, deployment: Deployment, stream: RedisStream,
                  args: argparse.Namespace) -> Outcome:
    samples: list[tuple[float, QueueStats]] = []
    stop = asyncio.Event()
    watcher = asyncio.create_task(_watch(stream, samples, stop))
    kill_at: list[float] = []

    async def kill_one_worker() -> None:
        await asyncio.sleep(args.seconds / 2)
        os.kill(processes.workers[0].pid, signal.SIGKILL)
        kill_at.append(time.perf_counter())

    pids = processes.server_pids + [w.pid for w in processes.workers]
    cpu_before = cpu_seconds(pids)
    killer = asyncio.create_task(kill_one_worker())
    load = await drive_ingest(processes.servers, deployment.rows, prefix="queue",
                              seconds=args.seconds, concurrency=args.concurrency)
    await killer
    drained_at = await _wait_backlog(stream, 0)
    cpu = cpu_seconds(pids) - cpu_before
    stop.set()
    await watcher
    reads, misses = await drive_reads(processes.servers, load.sampled[:READ_SAMPLE],
                                      concurrency=args.concurrency)
    return Outcome("queue", load, reads, misses, cpu, samples, kill_at[0],
                   {"steady_drained_after_s": drained_at - load.ended})


async def _burst(processes: Processes, deployment: Deployment, stream: RedisStream,
                 args: argparse.Namespace) -> dict[str, float]:
    """Pile up all-sampled records with both workers paused, then drain; kill one midway."""
    for worker in processes.workers:
        os.kill(worker.pid, signal.SIGSTOP)
    await drive_ingest(processes.servers, deployment.rows, prefix="burst", seconds=BURST_S,
                       concurrency=args.concurrency, context={"cohort": "canary"})
    backlog = (await stream.stats()).backlog
    started = time.perf_counter()
    for worker in processes.workers:
        os.kill(worker.pid, signal.SIGCONT)
    half_at = await _wait_backlog(stream, backlog // 2)
    left = (await stream.stats()).backlog
    os.kill(processes.workers[0].pid, signal.SIGKILL)
    killed_at = time.perf_counter()
    done_at = await _wait_backlog(stream, 0)
    return {"burst_jobs": backlog, "two_workers_per_s": (backlog - left) / (half_at - started),
            "one_worker_per_s": left / (done_at - killed_at),
            "one_worker_drain_s": done_at - killed_at}


async def _run_queue(processes: Processes, deployment: Deployment, prefix: str,
                     args: argparse.Namespace) -> Outcome:
    client = open_redis_client(args.redis_url)
    stream = RedisStream(client, StreamKeys.named(prefix, "explain"), group="workers",
                         max_length=1_000_000, dead_max_length=1000)
    try:
        outcome = await _steady(processes, deployment, stream, args)
    finally:
        await client.aclose()
    return outcome


async def _run_burst(processes: Processes, deployment: Deployment, prefix: str,
                     args: argparse.Namespace) -> dict[str, float]:
    client = open_redis_client(args.redis_url)
    stream = RedisStream(client, StreamKeys.named(prefix, "explain"), group="workers",
                         max_length=1_000_000, dead_max_length=1000)
    try:
        return await _burst(processes, deployment, stream, args)
    finally:
        await client.aclose()


def run_inline(deployment: Deployment, args: argparse.Namespace, prefix: str) -> Outcome:
    """One `whylens serve`, explaining sampled records in the request."""
    with scenario(deployment, "inline") as processes:
        processes.serve(base_env(deployment, args.redis_url, prefix), "s0")
        processes.wait_ready()
        cpu_before = cpu_seconds(processes.server_pids)
        load = asyncio.run(drive_ingest(processes.servers, deployment.rows, prefix="inline",
                                        seconds=args.seconds, concurrency=args.concurrency))
        cpu = cpu_seconds(processes.server_pids) - cpu_before
        reads, misses = asyncio.run(drive_reads(processes.servers, load.sampled[:READ_SAMPLE],
                                                concurrency=args.concurrency))
    return Outcome("inline", load, reads, misses, cpu)


def run_scale_out(deployment: Deployment, args: argparse.Namespace, prefix: str) -> Outcome:
    """Several replicas in queue mode and two workers; steady phase, then a burst."""
    env = {**base_env(deployment, args.redis_url, prefix), "WHYLENS_EXPLAIN_MODE": "queue"}
    with scenario(deployment, "scale-out") as processes:
        _start_queue_mode(processes, env, args.servers)
        outcome = asyncio.run(_run_queue(processes, deployment, prefix, args))
    with scenario(deployment, "burst") as processes:
        _start_queue_mode(processes, env, args.servers)
        outcome.drain.update(asyncio.run(_run_burst(processes, deployment, prefix, args)))
    return outcome


def _start_queue_mode(processes: Processes, env: dict[str, str], servers: int) -> None:
    for i in range(servers):
        processes.serve(env, f"s{i}")
    for i in range(2):
        processes.worker(env, f"w{i}")
    processes.wait_ready()


def _steady_rates(outcome: Outcome) -> tuple[float, float, float, float]:
    """Ingest and explanation rates before and after the worker was killed."""
    assert outcome.kill_at is not None
    load, kill = outcome.load, outcome.kill_at

    def done_at(moment: float) -> float:
        before = [s for t, s in outcome.queue if t <= moment]
        stats = before[-1] if before else outcome.queue[0][1]
        return stats.length - stats.backlog

    return (load.rate(load.started, kill), load.rate(kill, load.ended),
            (done_at(kill) - done_at(load.started)) / max(kill - load.started, 1e-9),
            (done_at(load.ended) - done_at(kill)) / max(load.ended - kill, 1e-9))


def report(inline: Outcome, queued: Outcome, args: argparse.Namespace,
           sizes: dict[str, float]) -> None:
    """Print the comparison."""
    print(f"\nsteady load: {args.seconds:.0f} s per scenario, {args.concurrency} concurrent "
          f"clients, single-record POSTs, 5 % sampled; Redis {args.redis_url}")
    print(f"{'scenario':<24}{'ingest/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'errors':>7}"
          f"{'GET p50':>8}{'GET p99':>8}{'GET !200':>9}{'svc CPU ms/rec':>15}")
    rates = {}
    for outcome, label in ((inline, "inline, 1 process"),
                           (queued, f"queue, {args.servers} proc + 2 wk")):
        load = outcome.load
        ok = [lat for _, lat, status in load.ingest if status == 200]
        p50, p99 = quantiles_ms(ok)
        g50, g99 = quantiles_ms(outcome.reads) if outcome.reads else (float("nan"),) * 2
        errors = sum(1 for _, _, status in load.ingest if status != 200)
        rates[outcome.name] = load.rate(load.started, load.ended)
        per_record = 1000 * outcome.service_cpu_s / max(len(ok), 1)
        print(f"{label:<24}{rates[outcome.name]:>9.0f}{p50:>8.1f}{p99:>8.1f}{errors:>7}"
              f"{g50:>8.1f}{g99:>8.1f}{outcome.read_misses:>9}{per_record:>15.2f}")
    print(f"ingest rate queue/inline: {ratio(rates['queue'], rates['inline'])} "
          "(the one client process is part of the bound on this machine)")
    before, after, explained_before, explained_after = _steady_rates(queued)
    lags = [s.backlog for _, s in queued.queue]
    ages = [s.oldest_undelivered_age_s for _, s in queued.queue]
    print(f"steady, worker killed at {args.seconds / 2:.0f} s: ingest {before:.0f}/s -> "
          f"{after:.0f}/s, explanations {explained_before:.1f}/s -> {explained_after:.1f}/s; "
          f"max backlog {max(lags, default=0)} jobs, max lag {max(ages, default=0):.1f} s; "
          f"drained {queued.drain['steady_drained_after_s']:.1f} s after the load stopped "
          "(includes the 5 s reclaim of the killed worker's jobs)")
    drain = queued.drain
    print(f"burst: {drain['burst_jobs']:.0f} all-sampled jobs queued with workers paused; "
          f"drained at {drain['two_workers_per_s']:.0f} jobs/s with 2 workers, "
          f"{drain['one_worker_per_s']:.0f} jobs/s after killing one "
          f"({drain['one_worker_drain_s']:.1f} s for the second half, incl. 5 s reclaim)")
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
            clear_prefix(args.redis_url, prefix)
    report(inline, queued, args, sizes)
    print(f"total wall time {time.perf_counter() - started:.0f} s; logs in {deployment.root}")


if __name__ == "__main__":
    main()
