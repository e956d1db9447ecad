"""Jinja2 templates and the HTML response of the triage pages."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI
from jinja2 import ChainableUndefined, Environment, FileSystemLoader, Undefined, select_autoescape
from starlette.responses import HTMLResponse

from service.trace_builder import iso_ms
from service.ui.status import look

TEMPLATES = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"

SECURITY_HEADERS = {
    # Everything the pages need is served by the service itself: no CDN, no inline code.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "object-src 'none'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def number(value: object, digits: int = 4) -> str:
    """Format a number with `digits` significant digits; anything else as text."""
    if isinstance(value, bool) or value is None or isinstance(value, Undefined):
        return str(value) if isinstance(value, bool) else "—"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}g}" if math.isfinite(value) else str(value)
    return str(value)


def percent(value: object) -> str:
    """Format a share (0–1) as a percentage."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return f"{value * 100:.1f}%"
    return "—"


def shown(value: object) -> str:
    """Render a (masked) feature value as the trace stores it; null is `missing`."""
    if value is None:
        return "missing"
    if isinstance(value, Undefined):
        return "—"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def build_environment() -> Environment:
    """The template environment: autoescaped; a missing optional field renders empty."""
    env = Environment(loader=FileSystemLoader(TEMPLATES),
                      autoescape=select_autoescape(["html"], default=True),
                      undefined=ChainableUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(number=number, percent=percent, shown=shown, iso=iso_ms,
                       path=lambda v: quote(str(v), safe=""))
    env.globals.update(look=look)
    return env


def environment(app: FastAPI) -> Environment:
    """The app's template environment, built on first use and kept on `app.state`."""
    env: Environment | None = getattr(app.state, "ui_templates", None)
    if env is None:
        env = build_environment()
        app.state.ui_templates = env
    return env


def render(app: FastAPI, template: str, context: dict[str, Any], *,
           status_code: int = 200) -> HTMLResponse:
    """Render a page with the security headers every page carries."""
    html = environment(app).get_template(template).render(**context)
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)
