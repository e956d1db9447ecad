"""A `whylens worker` told to stop while it holds jobs finishes them and leaves cleanly.

The worker is frozen (SIGSTOP) while it holds a batch, sent SIGTERM, and thawed: the
signal lands in the middle of the batch, deterministically. The records carry W3C
`traceparent` headers, so the same run shows them reaching the trace and the worker's
JSON log lines.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest
import redis

from service.app import create_app
from service.scale_out import EXPLAIN_STREAM, WORKER_GROUP
from service.settings import QueueSettings, SamplingSettings, Settings
from storage.queue import StreamKeys
from tests.integration.scale_out_support import (
    CreditModel,
    clear_prefix,
    free_port,
    held_by,
    json_logs,
    record_from,
    start_worker,
    stop_process,
    stream_idle,
    wait_exit,
    wait_for,
)

pytestmark = pytest.mark.integration

BATCH = 16
ROUND = 48


def _traceparent(n: int) -> str:
    return f"00-{n + 1:032x}-{n + 7:016x}-01"




def _scraped_length(port: int) -> float | None:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith('whylens_queue_length{stream="explain"} '):
            return float(line.split()[-1])
    return None


async def test_sigterm_finishes_the_batch_in_hand_and_returns_the_rest(
        credit: CreditModel, redis_url: str, unique_prefix: str, tmp_path: Path) -> None:
    keys = StreamKeys.named(unique_prefix, EXPLAIN_STREAM)
    env = {"WHYLENS_TRACES": redis_url, "WHYLENS_REDIS_KEY_PREFIX": unique_prefix,
           "WHYLENS_KEYRING": str(credit.keyring), "WHYLENS_ARTIFACTS": str(credit.artifacts),
           "WHYLENS_DATA_DIR": str(tmp_path / "worker-data"), "WHYLENS_LOG_FORMAT": "json",
           "WHYLENS_LOG_LEVEL": "INFO", "WHYLENS_QUEUE__BATCH_SIZE": str(BATCH),
           "WHYLENS_QUEUE__BLOCK_MS": "200", "WHYLENS_QUEUE__STATS_INTERVAL_S": "0.2",
           # No reclaim during the test: whatever completes, this worker completed.
           "WHYLENS_QUEUE__CLAIM_IDLE_MS": "600000"}
    settings = Settings(data_dir=tmp_path / "api", artifacts=str(credit.artifacts),
                        traces=redis_url, keyring=credit.keyring, redis_key_prefix=unique_prefix,
                        auth="off", explain_mode="queue", sampling=SamplingSettings(rate=1.0),
                        queue=QueueSettings())
    app = create_app(settings)
    log = tmp_path / "worker.log"
    metrics_port = free_port()
    worker = start_worker(env, log, "--consumer", "leaver", "--no-archive",
                          "--metrics-port", str(metrics_port))
    sync = redis.Redis.from_url(redis_url)
    parent: dict[str, str] = {}
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://w") as http:
                wait_for(lambda: any(line.get("event") == "worker_started"
                                     for line in json_logs(log)),
                         timeout_s=120, what="the worker to start")
                async def post(first: int, count: int) -> None:
                    for chunk in range(first, first + count, 8):
                        header = _traceparent(chunk)
                        ids = [f"s-{i}" for i in range(chunk, chunk + 8)]
                        answer = await http.post(
                            "/v1/predictions", headers={"traceparent": header},
                            json={"records": [record_from(credit.frame, i, rid)
                                              for i, rid in zip(range(chunk, chunk + 8), ids,
                                                                strict=True)]})
                        assert answer.status_code == 200
                        parent.update(dict.fromkeys(ids, header))

                await post(0, 8)
                # The worker's own /metrics follows the stream (its length only grows).
                wait_for(lambda: _scraped_length(metrics_port) == sync.xlen(keys.stream),
                         timeout_s=30, what="the worker's queue gauges")
                held: list[str] = []
                for round_no in range(20):
                    await post(len(parent), ROUND)
                    wait_for(lambda: bool(held_by(sync, keys, "leaver")) or stream_idle(sync, keys),
                             timeout_s=60, what="the worker to take jobs")
                    os.kill(worker.pid, signal.SIGSTOP)
                    held = held_by(sync, keys, "leaver")
                    if held:
                        break
                    os.kill(worker.pid, signal.SIGCONT)  # caught between two batches
                    assert round_no < 19, "the worker never held jobs when frozen"
                held_rids = {fields[b"request_id"].decode() for entry in held
                             for _, fields in sync.xrange(keys.stream, entry, entry)}
                worker.send_signal(signal.SIGTERM)
                os.kill(worker.pid, signal.SIGCONT)
                assert wait_exit(worker, log, timeout_s=60) == 0
                assert sync.xpending(keys.stream, WORKER_GROUP)["pending"] == 0
                consumers = {c["name"].decode()
                             for c in sync.xinfo_consumers(keys.stream, WORKER_GROUP)}
                assert "leaver" not in consumers
                lag = next(int(g["lag"]) for g in sync.xinfo_groups(keys.stream)
                           if g["name"].decode() == WORKER_GROUP)
                status = {rid: (await http.get(f"/v1/traces/{rid}")).status_code
                          for rid in parent}
                stored = {rid for rid, code in status.items() if code == 200}
                traces = {rid: (await http.get(f"/v1/traces/{rid}")).json() for rid in stored}
    finally:
        stop_process(worker)
        sync.close()
        clear_prefix(redis_url, unique_prefix)
    # The batch in hand was finished (by this worker, before it left) ...
    assert held_rids <= stored
    # ... and what it had not taken yet is still in the stream for the next worker.
    assert len(stored) + lag == len(parent)
    assert set(status.values()) <= {200, 404}
    lines = json_logs(log)
    assert any(line.get("event") == "worker_stopped" for line in lines)
    stored_lines = {line["request_id"]: line for line in lines
                    if line.get("event") == "trace_stored"}
    assert set(stored_lines) == stored
    # The caller's traceparent reaches the trace and the worker's log line for its job.
    for rid in stored:
        assert traces[rid]["context"]["traceparent"] == parent[rid]
        assert stored_lines[rid]["traceparent"] == parent[rid]
