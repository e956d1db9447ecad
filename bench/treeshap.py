"""Linear TreeSHAP (ours) vs LightGBM pred_contrib, shap.TreeExplainer and fasttreeshap v1/v2.

Interleaved in one run, on three LightGBM models over the foundation's data
(make_classification 50k x 30): the benchmark model (500 trees x 63 leaves), a
depth-limited one (255 trees, max_depth 8, num_leaves 255) and a deep one (255 trees,
num_leaves 255, max_depth -1). Per model: single-row median, then batches of 1,000 and
10,000 rows (rows/s, same rows for every peer, peers in rotating order; the 10,000-row
batch only on the benchmark model unless --all-batches). `whylens` is the explainer the
service calls (one LightGBM raw-score call for the additivity check, the kernel, the
check); `whylens_kernel` is the kernel alone on the same rows. Then end to end:
`POST /v1/explain` p50/p99 against two services at once, the previous TreeSHAP
(WHYLENS_EXPLAIN__TREE_KERNEL=reference) and ours, requests alternating; and an incident
backfill of 100,000 logged records through `service.trace_builder.build_traces`.

fasttreeshap needs numpy < 1.24, so it runs in bench/.venv-fasttreeshap (create it with
`python3 -m venv bench/.venv-fasttreeshap && bench/.venv-fasttreeshap/bin/pip install
"numpy<1.24" "scikit-learn<1.4" "pandas<2.1" lightgbm fasttreeshap`), timed inside that
process (bench/fasttreeshap_worker.py); without the venv its columns are skipped.

Run: .venv/bin/python -m bench.treeshap [--quick] [--batches 1000,10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import lightgbm as lgb
import numba
import numpy as np
import shap

from bench.common import (
    quantiles_ms,
    reference_data,
    rows_of,
    running_service,
    scratch_dir,
    timed,
    train_reference_model,
)
from bench.explain_latency import publish
from explainers.lightgbm_model import infer_lightgbm_schema
from explainers.registry import build_explainable, warm_up
from explainers.tree_linear import LinearTreeExplainer, memory_budget

ROOT = Path(__file__).resolve().parent
FTS_PYTHON = ROOT / ".venv-fasttreeshap" / "bin" / "python"
MODELS = {  # name: (n_estimators, num_leaves, max_depth)
    "benchmark 500x63": (500, 63, -1),
    "depth-limited 255 trees, max_depth 8": (255, 255, 8),
    "deep 255 trees, num_leaves 255": (255, 255, -1),
}
Peer = Callable[[int, int], float]  # (first row, rows) -> seconds of the call


class FastTreeShapWorker:
    """fasttreeshap in its own interpreter, timed there."""

    def __init__(self, model_path: Path, rows_path: Path) -> None:
        self._process = subprocess.Popen(
            [str(FTS_PYTHON), str(ROOT / "fasttreeshap_worker.py")], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True)
        self.loaded = self.ask({"op": "load", "model": str(model_path),
                                "rows": str(rows_path), "n_jobs": numba.get_num_threads()})

    def ask(self, command: dict[str, object]) -> dict[str, object]:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(json.dumps(command) + "\n")
        self._process.stdin.flush()
        answer: dict[str, object] = json.loads(self._process.stdout.readline())
        return answer

    def peer(self, algorithm: str) -> Peer:
        def run(start: int, n: int) -> float:
            answer = self.ask({"op": "explain", "algorithm": algorithm, "start": start, "n": n})
            return float(answer["seconds"])  # type: ignore[arg-type]
        return run

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps({"op": "quit"}) + "\n")
        self._process.stdin.flush()
        self._process.wait(timeout=30)


def trained(frame, name: str):  # type: ignore[no-untyped-def]
    """Train (or reload from bench/results) one of the MODELS."""
    n_estimators, num_leaves, max_depth = MODELS[name]
    path = ROOT / "results" / f"model-{n_estimators}-{num_leaves}-{max_depth}.txt"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        started = time.perf_counter()
        booster = train_reference_model(frame, n_estimators=n_estimators,
                                        num_leaves=num_leaves, max_depth=max_depth)
        booster.save_model(str(path))
        print(f"  trained in {time.perf_counter() - started:.0f} s")
    return lgb.Booster(model_file=str(path)), path


def peers(booster: lgb.Booster, explainer: LinearTreeExplainer, X: np.ndarray,
          worker: FastTreeShapWorker | None) -> dict[str, Peer]:
    tree = shap.TreeExplainer(booster)
    kernel = explainer.kernel_call()
    found: dict[str, Peer] = {
        "whylens": lambda a, n: timed(lambda: explainer.explain(X[a:a + n])),
        "whylens_kernel": lambda a, n: timed(lambda: kernel(X[a:a + n])),
        "lightgbm": lambda a, n: timed(lambda: booster.predict(X[a:a + n], pred_contrib=True)),
        "shap": lambda a, n: timed(lambda: tree.shap_values(X[a:a + n],
                                                            check_additivity=False)),
    }
    if worker is not None:
        found["fasttreeshap_v1"] = worker.peer("v1")
        found["fasttreeshap_v2"] = worker.peer("v2")
    return found


def rotated(names: list[str], i: int) -> list[str]:
    return names[i % len(names):] + names[:i % len(names)]


# fasttreeshap v2 rebuilds its per-leaf subset tables inside every call (seconds on the
# benchmark model), so it is sampled on the first rows only.
_FEW_SINGLE_ROWS = {"fasttreeshap_v2": 5}


def single_rows(found: dict[str, Peer], n: int) -> dict[str, float]:
    """Median ms of one-row calls, peers in rotating order over the same rows."""
    samples: dict[str, list[float]] = {name: [] for name in found}
    for i in range(n):
        for name in rotated(list(found), i):
            if i < _FEW_SINGLE_ROWS.get(name, n):
                samples[name].append(found[name](i, 1))
    return {name: statistics.median(s) * 1000 for name, s in samples.items()}


def batch(found: dict[str, Peer], n: int, round_: int) -> dict[str, float]:
    """Rows per second of one n-row call per peer, same rows."""
    return {name: n / found[name](0, n) for name in rotated(list(found), round_)}


def line(label: str, figures: dict[str, float], unit: str, *, faster: str) -> str:
    ours = figures["whylens"]
    ratios = ", ".join(
        f"{peer} {ours / v if faster == 'higher' else v / ours:.1f}x"
        for peer, v in figures.items() if peer != "whylens")
    values = ", ".join(f"{k} {v:.3g}" if v < 100 else f"{k} {v:.0f}"
                       for k, v in figures.items())
    return f"  {label} ({unit}): {values}\n    whylens speed-up vs: {ratios}"


def model_section(frame, X: np.ndarray, name: str, batches: list[int],  # type: ignore[no-untyped-def]
                  n_single: int) -> tuple[lgb.Booster, Path]:
    print(f"\n== {name}")
    booster, path = trained(frame, name)
    schema = infer_lightgbm_schema(booster, frame.drop(columns=["label"]))
    explainer = build_explainable("lightgbm", booster, schema, background=X[-100:],
                                  memory_budget=memory_budget(path.stat().st_size)).explainer
    assert isinstance(explainer, LinearTreeExplainer)
    depth = max(_depth(t["tree_structure"]) for t in booster.dump_model()["tree_info"])
    check = booster.predict(X[:1000], pred_contrib=True)[:, :-1]
    error = float(np.max(np.abs(explainer.explain(X[:1000]).values - check)))
    print(f"  max depth {depth}; model file {path.stat().st_size / 1e6:.1f} MB; compiled "
          f"{explainer.memory_bytes / 1e6:.1f} MB (budget {explainer.memory_budget_bytes / 1e6:.1f}"
          f" MB, kernel {explainer.kernel}); max |ours - pred_contrib| on 1,000 rows "
          f"{error:.1e}")
    rows_path = scratch_dir() / "rows.npy"
    np.save(rows_path, X[:max([*batches, n_single])])
    worker = FastTreeShapWorker(path, rows_path) if FTS_PYTHON.exists() else None
    if worker is None:
        print("  fasttreeshap: skipped (no bench/.venv-fasttreeshap)")
    else:
        print(f"  fasttreeshap {worker.loaded.get('version')}: {worker.loaded.get('notes')}")
    try:
        found = peers(booster, explainer, X, worker)
        print(line(f"single row, median of {n_single}", single_rows(found, n_single), "ms",
                   faster="lower"))
        for i, n in enumerate(batches):
            print(line(f"batch of {n:,} rows", batch(found, n, i), "rows/s", faster="higher"))
    finally:
        if worker is not None:
            worker.close()
    return booster, path


def _depth(node: dict[str, object]) -> int:
    if "leaf_value" in node:
        return 0
    return 1 + max(_depth(node["left_child"]), _depth(node["right_child"]))  # type: ignore[arg-type]


def http_explain_pair(urls: dict[str, str], rows: list[dict[str, float]],
                      n: int) -> dict[str, list[float]]:
    """POST /v1/explain with full records, alternating between the services."""
    samples: dict[str, list[float]] = {name: [] for name in urls}
    clients = {name: httpx.Client(base_url=url, timeout=60) for name, url in urls.items()}
    try:
        for i in range(n + 20):
            for name in rotated(list(urls), i):
                record = {"request_id": f"x-{uuid.uuid4().hex[:12]}", "model": "bench",
                          "features": rows[i % len(rows)], "prediction": {"score": 0.5}}
                started = time.perf_counter()
                clients[name].post("/v1/explain", json=record).raise_for_status()
                if i >= 20:  # the first calls warm connections and caches
                    samples[name].append(time.perf_counter() - started)
    finally:
        for client in clients.values():
            client.close()
    return samples


def backfill(settings_dir: Path, frame, n_records: int, batch_rows: int,  # type: ignore[no-untyped-def]
             tree_kernel: str) -> float:
    """Records per second through build_traces, batches of `batch_rows` logged records."""
    from service.model_loader import build_ready_model
    from service.trace_builder import TraceOptions, TraceRequest, build_traces
    from service.validation import Envelope
    from storage.artifact_factory import open_artifact_store
    from storage.catalog import ModelCatalog

    catalog = ModelCatalog(open_artifact_store((settings_dir / "artifacts").resolve().as_uri()))
    loaded = asyncio.run(catalog.load("bench", "1"))
    ready = build_ready_model(loaded.manifest, loaded.manifest_sha256, dict(loaded.files),
                              hmac_key=b"k" * 32, background_rows=100, tree_kernel=tree_kernel)
    rows = rows_of(frame.head(10_000))
    options = TraceOptions(top_k=5, mismatch_tolerance=1e-3)
    now = int(time.time() * 1000)
    started = time.perf_counter()
    for first in range(0, n_records, batch_rows):
        requests = [TraceRequest(Envelope(
            request_id=f"b-{i}", model="bench", version="1", features=rows[i % len(rows)],
            prediction={"score": 0.5}, timestamp=None, event_ms=now, action=None, context={}),
            reason="incident", policy="default", received_ms=now)
            for i in range(first, min(n_records, first + batch_rows))]
        build_traces(ready, requests, options)
    return n_records / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer rows and requests")
    parser.add_argument("--batches", default=None, help="comma-separated batch sizes")
    parser.add_argument("--all-batches", action="store_true",
                        help="every batch size on every model (default: the largest only "
                        "on the benchmark model, to keep the run under ~30 min on 2 cores)")
    args = parser.parse_args()
    n_single, n_http, n_backfill = (40, 60, 10_000) if args.quick else (200, 300, 100_000)
    batches = [int(b) for b in (args.batches or ("1000" if args.quick
                                                 else "1000,10000")).split(",")]
    print(f"kernels warmed up in {warm_up():.0f} ms; numba threads {numba.get_num_threads()}")
    frame = reference_data()
    X = frame.drop(columns=["label"]).to_numpy(np.float64)  # every feature is numeric
    booster = None
    for name in MODELS:
        sizes = batches if args.all_batches or booster is None else batches[:1]
        section = model_section(frame, X, name, sizes, n_single)
        booster = section[0] if booster is None else booster
    print("\n== end to end, benchmark model")
    assert booster is not None
    settings = publish(frame, booster)
    rows = rows_of(frame.head(5000))
    env = {"WHYLENS_DATA_DIR": str(settings.data_dir)}
    envs = {"reference (pred_contrib)": {**env, "WHYLENS_EXPLAIN__TREE_KERNEL": "reference",
                                         "WHYLENS_TRACES": f"sqlite:///{settings.data_dir}/a.db"},
            "linear (ours)": {**env, "WHYLENS_TRACES": f"sqlite:///{settings.data_dir}/b.db"}}
    with running_service(envs["reference (pred_contrib)"]) as before, \
            running_service(envs["linear (ours)"]) as after:
        samples = http_explain_pair({"reference (pred_contrib)": before,
                                     "linear (ours)": after}, rows, n_http)
    for name, values in samples.items():
        p50, p99 = quantiles_ms(values)
        print(f"  POST /v1/explain, {n_http} sequential, {name}: p50 {p50:.2f} ms, "
              f"p99 {p99:.2f} ms")
    reference_rate = backfill(settings.data_dir, frame, min(n_backfill, 2_000), 1000,
                              "reference")
    linear_rate = backfill(settings.data_dir, frame, n_backfill, 1000, "linear")
    print(f"  backfill through build_traces, batches of 1,000: ours {linear_rate:.0f} "
          f"records/s over {n_backfill:,} records ({n_backfill / linear_rate:.0f} s); "
          f"reference {reference_rate:.0f} records/s over 2,000 records (100,000 would "
          f"take {100_000 / reference_rate / 60:.1f} min); speed-up "
          f"{linear_rate / reference_rate:.1f}x")


if __name__ == "__main__":
    main()
