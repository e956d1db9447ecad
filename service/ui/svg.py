"""A tiny SVG writer: every attribute value and text node is escaped in one place."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from markupsafe import Markup, escape

Attr = str | int | float | None


def _attr_text(value: str | int | float) -> str:
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".") if math.isfinite(value) else "0"
    return str(value)


def element(tag: str, attrs: Mapping[str, Attr] | None = None,
            children: Iterable[Markup | str] = ()) -> Markup:
    """Render `<tag attrs>children</tag>`; plain strings are escaped, Markup is kept."""
    parts = [f"<{tag}"]
    for name, value in (attrs or {}).items():
        if value is None:
            continue
        parts.append(f' {name}="{escape(_attr_text(value))}"')
    body = "".join(str(child) if isinstance(child, Markup) else str(escape(child))
                   for child in children)
    if not body:
        return Markup("".join(parts) + "/>")
    return Markup("".join(parts) + ">" + body + f"</{tag}>")


def text(x: float, y: float, content: str, *, css: str | None = None,
         anchor: str = "start", extra: Mapping[str, Attr] | None = None) -> Markup:
    """A text node at (x, y) with an optional CSS class."""
    attrs: dict[str, Attr] = {"x": x, "y": y, "text-anchor": anchor, "class": css}
    attrs.update(extra or {})
    return element("text", attrs, [content])


def titled(shape: Markup, title: str) -> Markup:
    """Wrap a shape in a group with a hover title (also read by screen readers)."""
    return element("g", {}, [element("title", {}, [title]), shape])


def figure(width: int, height: int, *, label: str, css: str,
           children: Iterable[Markup]) -> Markup:
    """An inline SVG at its natural size, shrunk (never blown up) to fit its container;
    `label` is its accessible name."""
    return element("svg", {
        "xmlns": "http://www.w3.org/2000/svg", "viewBox": f"0 0 {width} {height}",
        "width": width, "height": height, "role": "img", "aria-label": label, "class": css,
        "preserveAspectRatio": "xMinYMin meet",
    }, [element("title", {}, [label]), *children])
