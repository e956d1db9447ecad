"""A live whylens (uvicorn on a loopback port) with the demo model, and headless Chromium.

Chromium is Debian's `/usr/bin/chromium` (`make services` installs it when missing),
driven by Playwright's Python package; no browser is ever downloaded.
"""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import lightgbm as lgb
import pandas as pd
import pytest
import uvicorn

from service.app import create_app
from service.demo.credit_data import FEATURES_YAML, make_applications
from service.publishing import PublishRequest, promote, publish_from_files
from service.settings import SamplingSettings, Settings

# The async API, on pytest-asyncio's session loop: the sync API would leave its own loop
# marked as running in this thread and break every async test that runs after it.
playwright_api = pytest.importorskip("playwright.async_api")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
LABEL = "defaulted"
RECORDS = 240
MASKED_ID = "ui-masked-1"
INCIDENT_ID = "INC0012345"
MASKED_RAW = {"zip_code": "99917", "income": 123457.25, "savings_balance": 98761.5}
"""Raw values of the masked features of MASKED_ID: distinctive, so a leak is findable."""


@dataclass(frozen=True, slots=True)
class LiveService:
    """The running service and what the tests posted to it."""

    base_url: str
    explained: list[str]
    masked_id: str
    masked_raw: dict[str, Any]
    incident_id: str
    attached: list[str]
    records: list[dict[str, Any]]
    """Every record posted (including MASKED_ID's), as sent."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _features(row: pd.Series) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in row.items():
        if isinstance(value, float) and math.isnan(value):
            out[str(name)] = None
        else:
            out[str(name)] = value.item() if hasattr(value, "item") else value
    return out


def _records(frame: pd.DataFrame, booster: lgb.Booster) -> list[dict[str, Any]]:
    now = time.time()
    features = frame.drop(columns=[LABEL])
    scores = booster.predict(features)
    records = []
    for i in range(len(frame)):
        canary = i % 5 == 0
        # Every 17th record carries a serving-side skew the trace must flag as a mismatch.
        score = float(scores[i]) + (0.2 if i % 17 == 3 else 0.0)
        moment = now - 1800 + 1800 * i / len(frame)
        records.append({
            "request_id": f"ui-{i:04d}", "model": "credit",
            **({"version": "canary"} if canary else {}),
            "features": _features(features.iloc[i]),
            "prediction": {"score": round(score, 6), "label": int(score >= 0.5),
                           "threshold": 0.5},
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + "Z",
            "context": {"cohort": "canary" if canary else "production",
                        "segment": ["mobile", "web"][i % 2]},
        })
    return records


@pytest.fixture(scope="session")
def ui_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ui")


@pytest.fixture(scope="session")
def ui_booster(ui_root: Path) -> lgb.Booster:
    frame = make_applications(2000, seed=21)
    model = lgb.LGBMClassifier(n_estimators=25, num_leaves=15, random_state=0, verbose=-1)
    model.fit(frame.drop(columns=[LABEL]), frame[LABEL])
    model.booster_.save_model(str(ui_root / "credit.txt"))
    frame.to_parquet(ui_root / "train.parquet")
    return model.booster_


@pytest.fixture(scope="session")
async def ui_settings(ui_root: Path, ui_booster: lgb.Booster) -> Settings:
    root = ui_root
    (root / "FEATURES.yaml").write_text(FEATURES_YAML, encoding="utf-8")
    settings = Settings(data_dir=root / "data", auth="off",
                        traces=f"sqlite:///{root / 'traces.db'}",
                        sampling=SamplingSettings(rate=0.25, always_cohorts=["canary"]))
    for version in ("1", "2"):
        await publish_from_files(settings, PublishRequest(
            name="credit", version=version, model_path=root / "credit.txt",
            train_path=root / "train.parquet", label=LABEL,
            features_path=root / "FEATURES.yaml", owner="risk-ml@example.com",
            criticality="high", rollback_to=None if version == "1" else "1"))
    await promote(settings, "credit", "1", "production")
    await promote(settings, "credit", "2", "canary")
    return settings


def _serve(settings: Settings) -> tuple[uvicorn.Server, threading.Thread, str]:
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False, ws="none",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, name="ui-test-server", daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base_url + "/readyz", timeout=2).status_code == 200:
                return server, thread, base_url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.should_exit = True
    raise RuntimeError("the test service did not become ready")


@pytest.fixture(scope="session")
def live_service(ui_settings: Settings, ui_booster: lgb.Booster) -> Iterator[LiveService]:
    server, thread, base_url = _serve(ui_settings)
    frame = make_applications(RECORDS, seed=5, shift=1.0)
    records = _records(frame, ui_booster)
    masked = dict(records[1], request_id=MASKED_ID, context={"cohort": "production"})
    masked["features"] = {**masked["features"], **MASKED_RAW}
    try:
        with httpx.Client(base_url=base_url, timeout=60) as client:
            answer = client.post("/v1/predictions", json={"records": records})
            answer.raise_for_status()
            explained = [r["request_id"] for r in answer.json()["records"] if r["sampled"]]
            # Explained on demand with counterfactuals: the trace page shows its table.
            client.post("/v1/explain?counterfactuals=2", json=masked).raise_for_status()
            attached = [*explained[:6], MASKED_ID]
            client.post("/v1/incidents", json={
                "id": INCIDENT_ID, "model": "credit", "severity": 2,
                "title": "Declines up after the canary rollout"}).raise_for_status()
            client.post(f"/v1/incidents/{INCIDENT_ID}/traces",
                        json={"request_ids": attached}).raise_for_status()
        yield LiveService(base_url, explained, MASKED_ID, MASKED_RAW, INCIDENT_ID, attached,
                          [*records, masked])
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make services` (installs Debian's chromium)")
    async with playwright_api.async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                    args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@dataclass
class ConsoleLog:
    """Console errors and uncaught page errors seen by one page."""

    errors: list[str]


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[tuple[Any, ConsoleLog]]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    tab = await context.new_page()
    log = ConsoleLog([])
    tab.on("console", lambda m: log.errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: log.errors.append(str(e)))
    yield tab, log
    await context.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ui-screenshots")
