"""With the outage spool turned off, a trace store outage is a clear 503 at once."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from service.app import create_app
from service.settings import Settings, SpoolSettings
from tests.integration.scale_out_support import CreditModel, free_port, record_from

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("spool", [False, True], ids=["spool-off", "spool-on"])
async def test_an_outage_spools_or_answers_503_as_configured(
        credit: CreditModel, tmp_path: Path, spool: bool) -> None:
    # Nothing listens on this port: the store is down from the start.
    port = free_port()
    settings = Settings(
        data_dir=tmp_path / "data", artifacts=str(credit.artifacts),
        traces=f"redis://127.0.0.1:{port}/0", keyring=credit.keyring, auth="off",
        spool=SpoolSettings(enabled=spool, dir=tmp_path / "spool"))
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://s") as http:
            answer = await http.post("/v1/predictions",
                                     json=record_from(credit.frame, 1, "off-1"))
            ready = await http.get("/readyz")
    if spool:
        assert answer.status_code == 200 and answer.json()["spooled"] is True
        assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["spool"]["records"] == 1
    else:
        assert answer.status_code == 503
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["type"].endswith("/store-unavailable")
        # Where the store lives is logged, not told to the caller.
        assert str(port) not in answer.json()["detail"]
        assert ready.status_code == 503
        assert not (tmp_path / "spool").exists()
