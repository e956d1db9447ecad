"""Triage pages under /ui/: server-rendered HTML with inline SVG charts (docs/ui.md)."""

from service.ui.routes import router

__all__ = ["router"]
