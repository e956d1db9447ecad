"""A published demo-like model and a live app (lifespan entered) for API tests."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import lightgbm as lgb
import pandas as pd
import pytest

from service.app import create_app
from service.demo.credit_data import FEATURES_YAML, make_applications
from service.publishing import PublishRequest, promote, publish_from_files
from service.settings import SamplingSettings, Settings

LABEL = "defaulted"


@pytest.fixture(scope="session")
def credit_frame() -> pd.DataFrame:
    return make_applications(4000, seed=21)


@pytest.fixture(scope="session")
def credit_booster(credit_frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
                   ) -> tuple[lgb.Booster, Path]:
    model = lgb.LGBMClassifier(n_estimators=40, num_leaves=15, random_state=0, verbose=-1)
    model.fit(credit_frame.drop(columns=[LABEL]), credit_frame[LABEL])
    path = tmp_path_factory.mktemp("model") / "credit.txt"
    model.booster_.save_model(str(path))
    return model.booster_, path


@pytest.fixture(scope="session")
async def published_settings(credit_frame: pd.DataFrame,
                             credit_booster: tuple[lgb.Booster, Path],
                             tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("whylens")
    train = root / "train.parquet"
    credit_frame.to_parquet(train)
    features = root / "FEATURES.yaml"
    features.write_text(FEATURES_YAML, encoding="utf-8")
    settings = Settings(data_dir=root / "data", auth="off",
                        sampling=SamplingSettings(rate=0.1, always_cohorts=["canary"]))
    for version in ("1", "2"):
        await publish_from_files(settings, PublishRequest(
            name="credit", version=version, model_path=credit_booster[1], train_path=train,
            label=LABEL, features_path=features))
    await promote(settings, "credit", "1", "production")
    await promote(settings, "credit", "2", "canary")
    return settings


@pytest.fixture
async def client(published_settings: Settings, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = published_settings.model_copy(
        update={"traces": f"sqlite:///{tmp_path / 'traces.db'}"})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://whylens") as http:
            yield http


def record_from(frame: pd.DataFrame, i: int, request_id: str, **extra: Any) -> dict[str, Any]:
    """A prediction record built from row i of the frame (NaN → null)."""
    row = frame.drop(columns=[LABEL]).iloc[i]
    features: dict[str, Any] = {}
    for name, value in row.items():
        if isinstance(value, float) and math.isnan(value):
            features[str(name)] = None
        elif hasattr(value, "item"):
            features[str(name)] = value.item()
        else:
            features[str(name)] = value
    record: dict[str, Any] = {"request_id": request_id, "model": "credit",
                              "features": features,
                              "prediction": {"score": 0.5, "threshold": 0.5},
                              "timestamp": "2026-11-25T18:00:00Z"}
    record.update(extra)
    return record


@dataclass(frozen=True)
class CanaryPair:
    """Two different models of the credit data: production (1) and canary (2)."""

    settings: Settings
    production: lgb.Booster
    canary: lgb.Booster


@pytest.fixture(scope="session")
async def canary_pair(credit_frame: pd.DataFrame, credit_booster: tuple[lgb.Booster, Path],
                      tmp_path_factory: pytest.TempPathFactory) -> CanaryPair:
    """Versions 1 (the session booster) and 2 (a differently trained one), own artifacts;
    sampling only explains the canary cohort, and the outbox retries quickly."""
    from service.settings import OutboxSettings

    root = tmp_path_factory.mktemp("canary-pair")
    train = root / "train.parquet"
    credit_frame.to_parquet(train)
    features = root / "FEATURES.yaml"
    features.write_text(FEATURES_YAML, encoding="utf-8")
    other = lgb.LGBMClassifier(n_estimators=25, num_leaves=7, learning_rate=0.2,
                               random_state=3, verbose=-1)
    other.fit(credit_frame.drop(columns=[LABEL]), credit_frame[LABEL])
    other_path = root / "canary.txt"
    other.booster_.save_model(str(other_path))
    settings = Settings(data_dir=root / "data", auth="off",
                        sampling=SamplingSettings(rate=0.0, always_cohorts=["canary"],
                                                  policy_refresh_s=0.2),
                        outbox=OutboxSettings(poll_s=0.05, backoff_s=0.05, backoff_max_s=0.2,
                                              timeout_s=0.5, lease_s=2.0))
    for version, path in (("1", credit_booster[1]), ("2", other_path)):
        await publish_from_files(settings, PublishRequest(
            name="credit", version=version, model_path=path, train_path=train, label=LABEL,
            features_path=features))
    await promote(settings, "credit", "1", "production")
    await promote(settings, "credit", "2", "canary")
    return CanaryPair(settings, credit_booster[0], other.booster_)
