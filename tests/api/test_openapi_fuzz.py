"""Schemathesis against the service's own OpenAPI document, on the live app (ASGI).

Every operation gets a bounded number of generated requests with an admin key: no answer
may be a 5xx, and every answer must match the documented status, content type and
schema (errors are problem+json, documented as every operation's default answer).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.app import create_app
from service.settings import Settings
from tests.api.security_support import as_role, write_api_keys

MAX_EXAMPLES = 12
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]

# The schema must exist when the tests are collected; the app behind it only starts (its
# lifespan) on the first generated request, once the fixture below has put models in place.
ROOT = Path(tempfile.mkdtemp(prefix="whylens-fuzz-"))
APP = create_app(Settings(
    data_dir=ROOT / "data", artifacts=(ROOT / "artifacts").as_uri(),
    traces=f"sqlite:///{ROOT / 'traces.db'}", api_keys=write_api_keys(ROOT / "keys.yaml")))
schema = schemathesis.openapi.from_dict(APP.openapi())
schema.app = APP


@pytest.fixture(scope="module", autouse=True)
def published_models(published_settings: Settings) -> Iterator[None]:
    shutil.copytree(Path(published_settings.artifacts_uri.removeprefix("file://")),
                    ROOT / "artifacts", dirs_exist_ok=True)
    yield
    asgi.shutdown_lifespans()
    shutil.rmtree(ROOT, ignore_errors=True)


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_every_operation_conforms_to_its_schema_and_never_fails(case: object) -> None:
    case.call_and_validate(headers=as_role("admin"), checks=CHECKS)  # type: ignore[attr-defined]


def test_the_schema_declares_keys_and_problem_answers() -> None:
    document = APP.openapi()
    assert set(document["components"]["securitySchemes"]) == {"ApiKey", "Bearer"}
    public = {"/healthz", "/readyz", "/metrics", "/ui/static/{name}"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert "default" in operation["responses"], (method, path)
            assert ("security" in operation) == (path not in public), (method, path)
