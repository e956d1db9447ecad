"""Every route of the app × every role (and no key): 2xx, 401 or 403 as the table says.

The routes come from the app itself, so a new endpoint fails this test until it is added
to ROLE_TABLE with the role it needs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from service.security import api_routes
from service.settings import Settings
from tests.api.conftest import record_from
from tests.api.security_support import as_role, keyed_client

ROLES = ("ingest", "read", "audit", "admin")
TRACE_ID = "matrix-1"

# (method, path, variant) → role needed (None: public). A variant is a query string that
# changes the role (unmask).
ROLE_TABLE: dict[tuple[str, str, str], str | None] = {
    ("GET", "/healthz", ""): None,
    ("GET", "/readyz", ""): None,
    ("GET", "/metrics", ""): None,
    ("POST", "/v1/predictions", ""): "ingest",
    ("POST", "/v1/labels", ""): "ingest",
    ("POST", "/v1/explain", ""): "read",
    ("GET", "/v1/traces", ""): "read",
    ("GET", "/v1/traces/{request_id}", ""): "read",
    ("GET", "/v1/traces/{request_id}", "unmask=true"): "audit",
    ("GET", "/v1/models", ""): "read",
    ("GET", "/v1/models/{name}", ""): "read",
    ("GET", "/v1/models/{name}/versions/{version}", ""): "read",
    ("GET", "/v1/models/{name}/drift", ""): "read",
    ("GET", "/v1/audit", ""): "admin",
    ("GET", "/v1/models/{name}/policy", ""): "read",
    ("PUT", "/v1/models/{name}/policy", ""): "admin",
    ("GET", "/v1/models/{name}/deferred", ""): "read",
    ("POST", "/v1/incidents", ""): "admin",
    ("GET", "/v1/incidents", ""): "read",
    ("GET", "/v1/incidents/{incident_id}", ""): "read",
    ("POST", "/v1/incidents/{incident_id}/traces", ""): "admin",
    ("POST", "/v1/incidents/{incident_id}/backfill", ""): "admin",
    ("POST", "/v1/incidents/{incident_id}/close", ""): "admin",
    ("POST", "/v1/incidents/{incident_id}/export", ""): "admin",
    ("GET", "/ui/", ""): "read",
    ("GET", "/ui/search", f"request_id={TRACE_ID}"): "read",
    ("GET", "/ui/traces/{request_id}", ""): "read",
    ("GET", "/ui/models/{name}", ""): "read",
    ("GET", "/ui/incidents/{incident_id}", ""): "read",
    ("GET", "/ui/static/{name}", ""): None,
}
# Routes served by FastAPI itself (documentation): public, not part of the API.
DOCS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}

INCIDENT = "INC-MATRIX"
PATH_VALUES = {"request_id": TRACE_ID, "name": "credit", "version": "1",
               "incident_id": INCIDENT}

# Bodies that make the call succeed, per route; other routes only need "not 401/403".
Body = Callable[[pd.DataFrame], Any]
BODIES: dict[tuple[str, str], Body] = {
    ("POST", "/v1/predictions"): lambda frame: record_from(
        frame, 3, TRACE_ID, context={"cohort": "canary"}),
    ("POST", "/v1/labels"): lambda frame: {"labels": [{"request_id": TRACE_ID, "label": 1}]},
    ("POST", "/v1/explain"): lambda frame: {"request_id": TRACE_ID},
    ("POST", "/v1/incidents"): lambda frame: {"id": "INC-MATRIX-NEW", "model": "credit",
                                              "title": "role matrix", "severity": 3},
    ("POST", "/v1/incidents/{incident_id}/traces"): lambda frame: {"request_ids": [TRACE_ID]},
}
# Routes whose request above is known to succeed: an allowed caller must get a 2xx. The
# others (unknown resources, bodies this test does not build) only have to let the
# caller in: neither 401 nor 403, and no 5xx.
SUCCEEDS = {
    ("GET", path) for method, path, _ in ROLE_TABLE if method == "GET"
} - {("GET", "/ui/static/{name}")} | {
    ("POST", "/v1/predictions"), ("POST", "/v1/labels"), ("POST", "/v1/explain"),
    ("POST", "/v1/incidents"), ("POST", "/v1/incidents/{incident_id}/traces"),
}


def allowed(needed: str | None, role: str | None) -> bool:
    return needed is None or role in ("admin", needed)


def expected_status(needed: str | None, role: str | None) -> str:
    if needed is None or allowed(needed, role):
        return "2xx"
    return "401" if role is None else "403"


def app_routes(app: Any) -> set[tuple[str, str]]:
    found = {(method, path) for path, route in api_routes(app.routes)
             for method in route.methods if method != "HEAD"}
    # Plain Starlette routes (documentation pages, mounts) have no API role.
    plain = {getattr(r, "path", "") for r in app.routes if not hasattr(r, "original_router")}
    assert plain <= DOCS, f"non-API routes outside the documentation: {plain - DOCS}"
    return {(method, path) for method, path in found if path not in DOCS}


@pytest.fixture
async def matrix_client(published_settings: Settings, tmp_path: Path,
                        credit_frame: pd.DataFrame):  # type: ignore[no-untyped-def]
    async with keyed_client(published_settings, tmp_path) as http:
        setup = await http.post("/v1/predictions", headers=as_role("admin"),
                                json=BODIES[("POST", "/v1/predictions")](credit_frame))
        assert setup.status_code == 200 and setup.json()["sampled"], setup.text
        incident = await http.post("/v1/incidents", headers=as_role("admin"), json={
            "id": INCIDENT, "model": "credit", "title": "matrix", "severity": 2})
        assert incident.status_code == 201, incident.text
        yield http


async def test_every_route_is_in_the_role_table(matrix_client: httpx.AsyncClient) -> None:
    routes = app_routes(matrix_client.app)  # type: ignore[attr-defined]
    tabled = {(method, path) for method, path, _ in ROLE_TABLE}
    unknown = sorted(routes - tabled)
    assert not unknown, (
        f"routes without an entry in ROLE_TABLE (tests/api/test_role_matrix.py): {unknown}; "
        "add each with the role it requires")
    assert not sorted(tabled - routes), "ROLE_TABLE lists routes the app does not have"


async def test_every_route_answers_each_role_as_the_table_says(
        matrix_client: httpx.AsyncClient, credit_frame: pd.DataFrame) -> None:
    routes = app_routes(matrix_client.app)  # type: ignore[attr-defined]
    wrong = []
    for (method, path, variant), needed in sorted(ROLE_TABLE.items(),
                                                  key=lambda kv: str(kv[0])):
        if (method, path) not in routes:
            continue
        url = path.format(**PATH_VALUES) + (f"?{variant}" if variant else "")
        body = BODIES.get((method, path))
        for role in (None, *ROLES):
            response = await matrix_client.request(
                method, url, headers=as_role(role),
                json=None if body is None else body(credit_frame))
            expected = expected_status(needed, role)
            status = response.status_code
            if expected == "2xx":
                # A redirect (the UI search) is a success too.
                ok = (200 <= status < 400 if (method, path) in SUCCEEDS
                      else status not in (401, 403) and status < 500)
            else:
                ok = str(status) == expected and (
                    response.headers["content-type"] == "application/problem+json")
            if not ok:
                wrong.append(f"{method} {url} as {role or 'no key'}: {status}, "
                             f"expected {expected}: {response.text[:200]}")
    assert not wrong, "\n".join(wrong)
    await assert_admin_calls_were_audited(matrix_client, routes)


async def assert_admin_calls_were_audited(http: httpx.AsyncClient,
                                          routes: set[tuple[str, str]]) -> None:
    """Every admin-only call of the walk above left an entry, a refused one too (403)."""
    logged: set[tuple[str, str, int]] = set()
    cursor = None
    while True:
        page = (await http.get("/v1/audit", headers=as_role("admin"), params={
            "limit": 200, **({"cursor": cursor} if cursor else {})})).json()
        logged |= {(e["actor"], e["target"], e["status"]) for e in page["entries"]
                   if e["action"] == "admin"}
        cursor = page["next_cursor"]
        if cursor is None:
            break
    missing = []
    for (method, path, variant), needed in ROLE_TABLE.items():
        if needed != "admin" or (method, path) not in routes:
            continue
        target = f"{method} {path.format(**PATH_VALUES)}" + (f"?{variant}" if variant else "")
        by_actor = {actor: status for actor, seen, status in logged if seen == target}
        if not 200 <= by_actor.get("admin-key", 0) < 500:
            missing.append(f"{target} by admin-key")
        missing += [f"{target} refused to {role}-key" for role in ("ingest", "read", "audit")
                    if by_actor.get(f"{role}-key") != 403]
    assert not missing, f"admin calls without their audit entry: {missing}"


async def test_bearer_and_x_api_key_headers_are_equivalent(
        matrix_client: httpx.AsyncClient) -> None:
    for headers in ({"Authorization": "Bearer key-read-91bc"},
                    {"X-API-Key": "key-read-91bc"},
                    {"authorization": "bearer key-read-91bc"}):
        response = await matrix_client.get(f"/v1/traces/{TRACE_ID}", headers=headers)
        assert response.status_code == 200, headers
    refused = await matrix_client.get(f"/v1/traces/{TRACE_ID}",
                                      headers={"Authorization": "Basic a2V5LXJlYWQtOTFiYw=="})
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
