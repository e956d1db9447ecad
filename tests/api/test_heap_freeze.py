"""Loaded models are frozen out of the GC's scans (service/heap.py)."""

from __future__ import annotations

import gc
from pathlib import Path

import httpx
import pandas as pd

from service.app import create_app
from service.settings import Settings
from tests.api.conftest import record_from


def _scanned(obj: object) -> bool:
    # gc.get_objects() lists the objects collections scan; frozen ones are not among them
    return any(o is obj for o in gc.get_objects())


async def test_preloaded_and_later_loaded_models_are_frozen(
        published_settings: Settings, credit_frame: pd.DataFrame, tmp_path: Path) -> None:
    settings = published_settings.model_copy(update={
        "traces": f"sqlite:///{tmp_path / 'traces.db'}", "preload_aliases": ["production"],
        "freeze_loaded_models": True})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        loader = app.state.runtime.loader
        production = await loader.get("credit", "production")
        assert gc.is_tracked(production) and not _scanned(production)
        frozen_before = gc.get_freeze_count()

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://whylens") as http:
            answer = await http.post("/v1/predictions",
                                     json=record_from(credit_frame, 0, "heap-1", version="canary"))
        assert answer.status_code == 200, answer.text
        canary = await loader.get("credit", "canary")
        assert canary is not production
        assert not _scanned(canary)
        assert gc.get_freeze_count() > frozen_before
