"""A live whylens (`whylens serve` in a child process) with the demo model, and headless Chromium.

Chromium is Debian's `/usr/bin/chromium` (`make services` installs it when missing),
driven by Playwright's Python package on a thread of its own (browser_thread.py); no
browser is ever downloaded. Both live for this folder's module only, so nothing of them
outlasts the browser tests, and every start, wait and stop is bounded.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import lightgbm as lgb
import pandas as pd
import pytest

from service.demo.credit_data import FEATURES_YAML, make_applications
from service.publishing import PublishRequest, promote, publish_from_files
from service.settings import Settings

pytest.importorskip("playwright.async_api")

from tests.browser.browser_thread import BrowserThread, LoopThread
from tests.browser.service_process import ServiceProcess

CHROMIUM = Path("/usr/bin/chromium")
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


def _features(row: pd.Series) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in row.items():
        if isinstance(value, float) and math.isnan(value):
            out[str(name)] = None
        else:
            out[str(name)] = value.item() if hasattr(value, "item") else value
    return out


def _records(frame: pd.DataFrame, boosters: tuple[lgb.Booster, lgb.Booster]
             ) -> list[dict[str, Any]]:
    now = time.time()
    features = frame.drop(columns=[LABEL])
    # Each record is logged with the score of the version that serves it.
    production, canary_scores = (b.predict(features) for b in boosters)
    records = []
    for i in range(len(frame)):
        canary = i % 5 == 0
        # Every 17th record carries a serving-side skew the trace must flag as a mismatch.
        score = float((canary_scores if canary else production)[i]) + (
            0.2 if i % 17 == 3 else 0.0)
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


@pytest.fixture(scope="module")
def ui_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ui")


@pytest.fixture(scope="module")
def ui_booster(ui_root: Path) -> tuple[lgb.Booster, lgb.Booster]:
    """Version 1 and version 2 (the canary: fewer, larger trees, so their explanations
    differ and the incident page has canary vs production differences to show)."""
    frame = make_applications(2000, seed=21)
    boosters = []
    for version, (trees, leaves) in (("1", (25, 15)), ("2", (12, 31))):
        model = lgb.LGBMClassifier(n_estimators=trees, num_leaves=leaves, random_state=0,
                                   verbose=-1)
        model.fit(frame.drop(columns=[LABEL]), frame[LABEL])
        model.booster_.save_model(str(ui_root / f"credit-{version}.txt"))
        boosters.append(model.booster_)
    frame.to_parquet(ui_root / "train.parquet")
    return boosters[0], boosters[1]


async def _publish(root: Path, settings: Settings) -> None:
    for version in ("1", "2"):
        await publish_from_files(settings, PublishRequest(
            name="credit", version=version, model_path=root / f"credit-{version}.txt",
            train_path=root / "train.parquet", label=LABEL,
            features_path=root / "FEATURES.yaml", owner="risk-ml@example.com",
            criticality="high", rollback_to=None if version == "1" else "1"))
    await promote(settings, "credit", "1", "production")
    await promote(settings, "credit", "2", "canary")


@pytest.fixture(scope="module")
def ui_service_env(ui_root: Path, ui_booster: tuple[lgb.Booster, lgb.Booster]
                   ) -> dict[str, str]:
    """Publish versions 1 (production) and 2 (canary); the service's WHYLENS_* settings."""
    (ui_root / "FEATURES.yaml").write_text(FEATURES_YAML, encoding="utf-8")
    data_dir = ui_root / "data"
    # On a loop of its own, never pytest-asyncio's (its loop must not run in this thread).
    loop = LoopThread("ui-publish")
    try:
        loop.call(_publish(ui_root, Settings(data_dir=data_dir, auth="off")),
                  timeout_s=300, what="publishing the test models")
    finally:
        loop.close()
    return {"WHYLENS_DATA_DIR": str(data_dir), "WHYLENS_AUTH": "off",
            "WHYLENS_TRACES": f"sqlite:///{ui_root / 'traces.db'}",
            "WHYLENS_SAMPLING__RATE": "0.25", "WHYLENS_SAMPLING__ALWAYS_COHORTS": '["canary"]',
            "WHYLENS_LOG_LEVEL": "WARNING"}


def _post_traffic(base_url: str, records: list[dict[str, Any]], *,
                  masked: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Post the records, explain MASKED_ID with counterfactuals, open the incident and
    attach traces; return the explained and the attached request IDs."""
    with httpx.Client(base_url=base_url, timeout=120) as client:
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
    return explained, attached


@pytest.fixture(scope="module")
def live_service(ui_root: Path, ui_service_env: dict[str, str],
                 ui_booster: tuple[lgb.Booster, lgb.Booster]) -> Iterator[LiveService]:
    service = ServiceProcess(ui_service_env, workdir=ui_root)
    try:
        base_url = service.start()
        records = _records(make_applications(RECORDS, seed=5, shift=1.0), ui_booster)
        masked = dict(records[1], request_id=MASKED_ID, context={"cohort": "production"})
        masked["features"] = {**masked["features"], **MASKED_RAW}
        explained, attached = _post_traffic(base_url, records, masked=masked)
        yield LiveService(base_url, explained, MASKED_ID, MASKED_RAW, INCIDENT_ID, attached,
                          [*records, masked])
    finally:
        service.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserThread]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make services` (installs Debian's chromium)")
    chromium = BrowserThread(CHROMIUM)
    try:
        chromium.start()
        yield chromium
    finally:
        chromium.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ui-screenshots")
