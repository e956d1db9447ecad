"""API keys, one per role, and a live app that requires them (security tests)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import yaml

from service.app import create_app
from service.settings import Settings

ROLE_KEYS = {"ingest": "key-ingest-7f3a", "read": "key-read-91bc", "audit": "key-audit-22de",
             "admin": "key-admin-5e0f"}


def write_api_keys(path: Path) -> Path:
    """Write the keys file (sha256 digests only) for ROLE_KEYS."""
    path.write_text(yaml.safe_dump([
        {"name": f"{role}-key", "sha256": hashlib.sha256(key.encode()).hexdigest(),
         "roles": [role]} for role, key in ROLE_KEYS.items()]), encoding="utf-8")
    return path


def as_role(role: str | None) -> dict[str, str]:
    """Headers of a caller with one role (None: no key at all)."""
    return {} if role is None else {"X-API-Key": ROLE_KEYS[role]}


@asynccontextmanager
async def keyed_client(settings: Settings, tmp_path: Path,
                       **update: object) -> AsyncIterator[httpx.AsyncClient]:
    """A client on a live app whose API keys are ROLE_KEYS."""
    keys = write_api_keys(tmp_path / "api-keys.yaml")
    changes = {"auth": None, "api_keys": keys,
               "traces": f"sqlite:///{tmp_path / 'traces.db'}", **update}
    app = create_app(settings.model_copy(update=changes))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://whylens",
                                     timeout=60) as http:
            http.app = app  # type: ignore[attr-defined]
            yield http
