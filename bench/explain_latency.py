"""Foundation benchmark: our explainer vs LightGBM native vs shap, in-process and over HTTP,
and ingest throughput into Redis vs raw pipelined writes.

Run: .venv/bin/python bench/explain_latency.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from collections.abc import Callable

import httpx
import redis
import shap

from bench.common import (
    quantiles_ms,
    ratio,
    reference_data,
    rows_of,
    running_service,
    scratch_dir,
    timed,
    train_reference_model,
)
from explainers.encoding import encode_frame
from explainers.lightgbm_model import infer_lightgbm_schema
from explainers.registry import build_explainable
from service.publishing import PublishRequest, promote, publish_from_files
from service.settings import Settings


def single_row(booster, explainer, X, n: int) -> dict[str, list[float]]:
    """Interleave the three single-row explainers over the same rows."""
    tree = shap.TreeExplainer(booster)
    samples: dict[str, list[float]] = {"whylens": [], "lightgbm": [], "shap": []}
    for i in range(n):
        row = X[i : i + 1]
        calls = [("whylens", lambda row=row: explainer.explain(row)),
                 ("lightgbm", lambda row=row: booster.predict(row, pred_contrib=True)),
                 ("shap", lambda row=row: tree.shap_values(row, check_additivity=False))]
        for name, fn in calls[i % 3 :] + calls[: i % 3]:
            samples[name].append(timed(fn))
    return samples


def batch(booster, explainer, X) -> dict[str, float]:
    """Rows per second on one batch, each peer once, same rows."""
    tree = shap.TreeExplainer(booster)
    return {
        "whylens": len(X) / timed(lambda: explainer.explain(X)),
        "lightgbm": len(X) / timed(lambda: booster.predict(X, pred_contrib=True)),
        "shap": len(X) / timed(lambda: tree.shap_values(X, check_additivity=False)),
    }


def publish(frame, booster) -> Settings:
    """Publish the model to a scratch artifact folder."""
    root = scratch_dir()
    model_path = root / "model.txt"
    booster.save_model(str(model_path))
    train_path = root / "train.parquet"
    frame.to_parquet(train_path)
    settings = Settings(data_dir=root / "data", auth="off")
    asyncio.run(publish_from_files(settings, PublishRequest(
        name="bench", version="1", model_path=model_path, train_path=train_path,
        label="label")))
    asyncio.run(promote(settings, "bench", "1", "production"))
    return settings


def http_explain(base: str, rows: list[dict[str, float]], n: int,
                 explain_row: Callable[[int], object]) -> tuple[list[float], list[float]]:
    """POST /v1/explain with full records, one client, sequentially.

    Each request is paired with an in-process explanation of the same row, in
    alternating order, so both see the same machine load (other sessions share the
    cores): a reference median taken minutes earlier made the ratio swing either way.
    """
    samples: list[float] = []
    local: list[float] = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for i in range(n + 20):
            record = {"request_id": f"x-{uuid.uuid4().hex[:12]}", "model": "bench",
                      "features": rows[i % len(rows)], "prediction": {"score": 0.5}}

            def over_http(record: dict[str, object] = record) -> None:
                client.post("/v1/explain", json=record).raise_for_status()

            calls = [(samples, over_http), (local, lambda i=i: explain_row(i % len(rows)))]
            for sink, fn in calls[i % 2:] + calls[: i % 2]:
                elapsed = timed(fn)
                if i >= 20:  # the first calls warm connections and caches
                    sink.append(elapsed)
    return samples, local


def http_ingest(base: str, redis_url: str, rows: list[dict[str, float]],
                batches: int) -> tuple[float, float]:
    """Records per second through POST /v1/predictions in batches of 500, and raw writes.

    Each ingest batch is paired with redis-py pipelined SETs of 500 equally sized values
    (2 KB) in alternating order, so both rates come from the same minutes. Bodies are
    encoded before the clock starts, as the raw baseline's values are: the client's JSON
    encoder (about 10 µs per record with the standard library) is not service overhead.
    """
    headers = {"content-type": "application/json"}
    raw = redis.Redis.from_url(redis_url)
    value = os.urandom(2048)
    prefix = f"wlbench-raw-{uuid.uuid4().hex[:8]}"

    def raw_batch(b: int) -> None:
        pipe = raw.pipeline(transaction=False)
        for i in range(b * 500, b * 500 + 500):
            pipe.set(f"{prefix}:{i}", value, ex=600)
        pipe.execute()

    ingest_s = raw_s = 0.0
    with httpx.Client(base_url=base, timeout=60) as client:
        bodies = []
        for b in range(batches):
            records = [{"request_id": f"i-{uuid.uuid4().hex}", "model": "bench",
                        "features": rows[(b * 500 + k) % len(rows)],
                        "prediction": {"score": 0.5}} for k in range(500)]
            bodies.append(json.dumps({"records": records}).encode())
        client.post("/v1/predictions", content=bodies[0], headers=headers).raise_for_status()
        raw_batch(0)
        for b, body in enumerate(bodies[1:], start=1):
            spent = timed(lambda body=body: client.post(
                "/v1/predictions", content=body, headers=headers).raise_for_status())
            raw_spent = timed(lambda b=b: raw_batch(b))
            ingest_s, raw_s = ingest_s + spent, raw_s + raw_spent
    for key in raw.scan_iter(f"{prefix}:*", count=1000):
        raw.delete(key)
    raw.close()
    n = 500 * (batches - 1)
    return n / ingest_s, n / raw_s


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer rows and requests")
    parser.add_argument("--redis", default=os.environ.get("WHYLENS_TEST_REDIS_URL",
                                                          "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    n_single, n_batch, n_http, n_ingest = (100, 2000, 100, 10) if args.quick else (
        300, 10_000, 300, 41)

    frame = reference_data()
    started = time.perf_counter()
    booster = train_reference_model(frame)
    print(f"trained 500x63 model in {time.perf_counter() - started:.0f} s")
    schema = infer_lightgbm_schema(booster, frame.drop(columns=["label"]))
    X = encode_frame(frame.drop(columns=["label"]), schema)
    explainer = build_explainable("lightgbm", booster, schema, background=X[:100]).explainer

    samples = single_row(booster, explainer, X, n_single)
    medians = {k: statistics.median(v) * 1000 for k, v in samples.items()}
    faster_peer = min(medians["lightgbm"], medians["shap"])
    print(f"\nsingle row, median of {n_single} (ms): " + ", ".join(
        f"{k} {v:.2f}" for k, v in medians.items())
        + f"; whylens / faster peer = {ratio(medians['whylens'], faster_peer)} (target <= 1.1x)")

    rates = batch(booster, explainer, X[:n_batch])
    best_peer = max(rates["lightgbm"], rates["shap"])
    print(f"batch of {n_batch} rows (rows/s): " + ", ".join(f"{k} {v:.0f}" for k, v in
                                                            rates.items())
          + f"; whylens / faster peer = {ratio(rates['whylens'], best_peer)} (target >= 0.9x)")

    settings = publish(frame, booster)
    rows = rows_of(frame.head(5000))
    env = {"WHYLENS_DATA_DIR": str(settings.data_dir),
           "WHYLENS_TRACES": f"sqlite:///{settings.data_dir / 'http.db'}"}
    with running_service(env) as base:
        http, local = http_explain(base, rows, n_http,
                                   lambda i: explainer.explain(X[i : i + 1]))
    p50, p99 = quantiles_ms(http)
    local_p50 = statistics.median(local) * 1000
    print(f"HTTP POST /v1/explain ({n_http} sequential, SQLite): p50 {p50:.2f} ms, p99 "
          f"{p99:.2f} ms; in-process p50 interleaved with it {local_p50:.2f} ms; "
          f"p50 / in-process p50 = {ratio(p50, local_p50)} (aim <= 1.3x)")

    keyring = settings.data_dir / "keyring.yaml"
    redis_env = {"WHYLENS_DATA_DIR": str(settings.data_dir), "WHYLENS_TRACES": args.redis,
                 "WHYLENS_KEYRING": str(keyring), "WHYLENS_SAMPLING__RATE": "0.01",
                 "WHYLENS_REDIS_KEY_PREFIX": f"wlbench-{uuid.uuid4().hex[:8]}"}
    with running_service(redis_env) as base:
        ingest_rate, raw_rate = http_ingest(base, args.redis, rows, n_ingest)
    print(f"ingest, batches of 500 at 1 % sampling into Redis: {ingest_rate:.0f} records/s; "
          f"raw redis-py pipelined SET of 2 KB, interleaved: {raw_rate:.0f} writes/s; ratio "
          f"{ratio(ingest_rate, raw_rate)} (aim >= 0.2x)")


if __name__ == "__main__":
    main()
