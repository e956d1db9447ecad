"""Helpers of the sampling, incident, compare and export API tests."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import lightgbm as lgb
import numpy as np
import pandas as pd

from service.app import create_app
from service.settings import Settings
from tests.api.conftest import LABEL

PROBLEM = "application/problem+json"


def isolated(settings: Settings, tmp_path: Path, **updates: Any) -> Settings:
    """The pair's settings on a private copy of its artifacts and a private trace store."""
    artifacts = tmp_path / "artifacts"
    if not artifacts.exists():
        shutil.copytree(settings.data_dir / "artifacts", artifacts)
    return settings.model_copy(update={
        "artifacts": artifacts.resolve().as_uri(),
        "traces": f"sqlite:///{tmp_path / 'traces.db'}", "data_dir": tmp_path / "data",
        **updates})


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A live app (lifespan entered: outbox worker and policy refresher running)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://whylens",
                                     timeout=30) as http:
            yield http


async def wait_until(check: Callable[[], Awaitable[bool]], *, timeout_s: float = 30.0,
                     what: str = "condition") -> None:
    """Poll `check` until it holds; fail after `timeout_s` (a bound, not a speed claim)."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def peer_contrib(booster: lgb.Booster, frame: pd.DataFrame, rows: list[int]) -> np.ndarray:
    """LightGBM's own exact TreeSHAP (pred_contrib) of frame rows; last column: base value."""
    return np.asarray(booster.predict(frame.drop(columns=[LABEL]).iloc[rows],
                                      pred_contrib=True))


def feature_names(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c != LABEL]
