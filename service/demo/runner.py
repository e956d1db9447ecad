"""`whylens demo`: train, publish, serve and replay traffic, all embedded."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

import httpx
import lightgbm as lgb
import numpy as np
import pandas as pd
import uvicorn

from service.app import create_app
from service.demo.credit_data import FEATURES_YAML, make_applications
from service.publishing import PublishRequest, promote, publish_from_files
from service.settings import SamplingSettings, Settings
from storage.artifact_factory import open_artifact_store
from storage.catalog import ModelCatalog

logger = logging.getLogger(__name__)

LABEL = "defaulted"
MODEL_NAME = "credit"
_VERSIONS = {"1": {"n_estimators": 150, "num_leaves": 31, "learning_rate": 0.06, "seed": 1},
             "2": {"n_estimators": 220, "num_leaves": 47, "learning_rate": 0.05, "seed": 2}}


def _train(frame: pd.DataFrame, params: dict[str, float], path: Path) -> lgb.Booster:
    features = frame.drop(columns=[LABEL])
    model = lgb.LGBMClassifier(
        n_estimators=int(params["n_estimators"]), num_leaves=int(params["num_leaves"]),
        learning_rate=params["learning_rate"], random_state=int(params["seed"]),
        min_child_samples=40, subsample=0.8, subsample_freq=1, colsample_bytree=0.8,
        verbose=-1,
    )
    model.fit(features, frame[LABEL])
    model.booster_.save_model(str(path))
    return model.booster_


async def _already_published(settings: Settings) -> bool:
    catalog = ModelCatalog(open_artifact_store(settings.artifacts_uri))
    return MODEL_NAME in await catalog.list_models() and set(_VERSIONS) <= set(
        await catalog.list_versions(MODEL_NAME))


def prepare_models(settings: Settings) -> dict[str, lgb.Booster]:
    """Train and publish versions 1 and 2 (once), alias production → 1 and canary → 2."""
    work = settings.data_dir / "demo"
    work.mkdir(parents=True, exist_ok=True)
    boosters = {}
    published = asyncio.run(_already_published(settings))
    train = make_applications(20000, seed=11)
    train_path = work / "train.parquet"
    train.to_parquet(train_path)
    features_path = work / "FEATURES.yaml"
    features_path.write_text(FEATURES_YAML, encoding="utf-8")
    for version, params in _VERSIONS.items():
        model_path = work / f"credit-v{version}.txt"
        if published and model_path.exists():
            boosters[version] = lgb.Booster(model_file=str(model_path))
            continue
        boosters[version] = _train(train, params, model_path)
        asyncio.run(publish_from_files(settings, PublishRequest(
            name=MODEL_NAME, version=version, model_path=model_path, train_path=train_path,
            label=LABEL, features_path=features_path, owner="risk-ml@example.com",
            criticality="high", rollback_to=None if version == "1" else "1")))
        print(f"  published {MODEL_NAME}@{version}")
    asyncio.run(promote(settings, MODEL_NAME, "1", "production"))
    asyncio.run(promote(settings, MODEL_NAME, "2", "canary"))
    return boosters


def _records(boosters: dict[str, lgb.Booster], n: int, run: str) -> list[dict[str, object]]:
    frame = make_applications(n, seed=int(time.time()) % 100000, shift=0.0)
    late = frame.index >= int(n * 0.7)
    # The last 30 % of traffic drifts: more debt, higher utilisation.
    shifted = make_applications(n, seed=5, shift=1.5)
    for column in ("utilization", "debt_ratio"):
        frame.loc[late, column] = shifted.loc[late, column]
    features = frame.drop(columns=[LABEL])
    rng = np.random.default_rng(3)
    canary = rng.random(n) < 0.1
    scores = {v: b.predict(features) for v, b in boosters.items()}
    now = time.time()
    records: list[dict[str, object]] = []
    for i in range(n):
        version = "2" if canary[i] else "1"
        score = float(scores[version][i])
        if rng.random() < 0.01:  # a serving-side skew the trace should flag as a mismatch
            score = min(1.0, score + 0.15)
        row = {k: _json_value(v) for k, v in features.iloc[i].items()}
        moment = now - 3600 + 3600 * i / n
        records.append({
            "request_id": f"demo-{run}-{i:05d}", "model": MODEL_NAME,
            **({"version": "canary"} if canary[i] else {}),
            "features": row,
            "prediction": {"score": round(score, 6), "label": int(score >= 0.5),
                           "threshold": 0.5},
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + "Z",
            "action": "declined" if score >= 0.5 else "approved",
            "context": {"cohort": "canary" if canary[i] else "production",
                        "region": ["eu-west-1", "us-east-1"][i % 2],
                        "segment": ["mobile", "web", "branch"][i % 3]},
        })
    return records


def _json_value(value: object) -> object:
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def replay(base_url: str, boosters: dict[str, lgb.Booster], n: int) -> list[str]:
    """Post `n` records in batches; return the request IDs that were sampled."""
    run = time.strftime("%H%M%S")
    records = _records(boosters, n, run)
    sampled: list[str] = []
    with httpx.Client(base_url=base_url, timeout=60) as client:
        for start in range(0, n, 250):
            response = client.post("/v1/predictions", json={"records": records[start:start + 250]})
            response.raise_for_status()
            sampled += [r["request_id"] for r in response.json()["records"] if r["sampled"]]
    return sampled


def _wait_ready(base_url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(base_url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"service at {base_url} did not become ready in {timeout_s:.0f} s")


def run_demo(*, host: str, port: int, records: int, serve: bool) -> int:
    """Train/publish, start the service, replay traffic, print where to look."""
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = Settings(auth="off", sampling=SamplingSettings(rate=0.05, near_threshold=0.02))
    print(f"whylens demo: data in {settings.data_dir.resolve()}")
    started = time.monotonic()
    boosters = prepare_models(settings)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host=host, port=port,
                                           log_level="warning", access_log=False))
    base_url = f"http://{host}:{port}"

    def traffic() -> None:
        _wait_ready(base_url, 120)
        sampled = replay(base_url, boosters, records)
        elapsed = time.monotonic() - started
        print(f"\nreplayed {records} records in {elapsed:.0f} s since start; "
              f"{len(sampled)} explained. Try:")
        for rid in sampled[:6]:
            print(f"  curl -s {base_url}/v1/traces/{rid} | python3 -m json.tool")
        print(f"  curl -s '{base_url}/v1/traces?model={MODEL_NAME}&reason=canary&limit=5'")
        print(f"  curl -s {base_url}/v1/models/{MODEL_NAME}")
        print(f"  curl -s {base_url}/metrics | grep whylens_")
        print("Triage pages (open in a browser):")
        print(f"  {base_url}/ui/   (fleet: drift status and open incidents per model)")
        print(f"  {base_url}/ui/models/{MODEL_NAME}   (drift heat map, scores, reasons)")
        for rid in sampled[:2]:
            print(f"  {base_url}/ui/traces/{rid}   (why this decision: waterfall)")
        # The demo opens no incident (that would change its sampling): show where one goes.
        print(f"  {base_url}/ui/incidents/<id>   (after POST /v1/incidents: attached "
              "traces, attribution shift, drift)")
        if serve:
            print("\nserving until Ctrl-C")
        else:
            server.should_exit = True

    thread = threading.Thread(target=traffic, name="demo-traffic", daemon=True)
    thread.start()
    server.run()
    thread.join(timeout=5)
    return 0
