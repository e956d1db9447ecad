"""Wires access control into the app: request limits, the audit trail and its route,
and an OpenAPI document that tells the truth about keys and problem answers."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from service.audit import AuditMiddleware
from service.deps import authenticate
from service.limits import RequestLimits
from service.problems import PROBLEM_JSON
from service.routes import audit
from service.settings import LimitSettings

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"},
        "status": {"type": "integer"}, "detail": {"type": "string"},
        "errors": {"type": "array", "items": {
            "type": "object", "required": ["field", "message"],
            "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}},
    },
}
_PROBLEM_RESPONSE = {"description": "A problem (RFC 9457)",
                     "content": {PROBLEM_JSON: {"schema": {"$ref":
                                                           "#/components/schemas/Problem"}}}}
_SECURITY_SCHEMES = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "Bearer": {"type": "http", "scheme": "bearer"},
}
_TEXT_ROUTES = {"/metrics"}


def install_security(app: FastAPI, limits: LimitSettings) -> None:
    """Add the limits and audit middleware, the audit route and the OpenAPI fix-ups."""
    app.include_router(audit.router)
    app.add_middleware(AuditMiddleware)
    # Added last, so it runs first: nothing oversized reaches auth, audit or a route.
    app.add_middleware(RequestLimits, body_bytes=limits.body_bytes,
                       header_bytes=limits.header_bytes)
    app.openapi = _openapi_builder(app)  # type: ignore[method-assign]


def api_routes(routes: Sequence[BaseRoute], prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    """Yield (full path, route) for every API route, also inside included routers.

    FastAPI flattens `include_router` into `app.routes` in some versions and keeps the
    included routers (with their prefix) in others; both are walked.
    """
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, route
        included = getattr(route, "original_router", None)
        if included is not None:
            context = getattr(route, "include_context", None)
            yield from api_routes(included.routes, prefix + str(getattr(context, "prefix", "")))


def needs_key(dependant: Dependant) -> bool:
    """Tell whether a route's dependency tree authenticates the caller."""
    call = dependant.call
    return call is authenticate or getattr(call, "authenticates", False) or any(
        needs_key(d) for d in dependant.dependencies)


def _openapi_builder(app: FastAPI) -> Callable[[], dict[str, Any]]:
    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            _fix_up(schema, app)
            app.openapi_schema = schema
        return app.openapi_schema

    return build


def _fix_up(schema: dict[str, Any], app: FastAPI) -> None:
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    components["securitySchemes"] = _SECURITY_SCHEMES
    keyed = {(method.lower(), path) for path, route in api_routes(app.routes)
             if needs_key(route.dependant) for method in route.methods or ()}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            # Every error answer is a problem document, whatever its status.
            responses["default"] = _PROBLEM_RESPONSE
            if path in _TEXT_ROUTES and "200" in responses:
                responses["200"]["content"] = {"text/plain": {"schema": {"type": "string"}}}
            if (method, path) in keyed:
                operation["security"] = [{"ApiKey": []}, {"Bearer": []}]
