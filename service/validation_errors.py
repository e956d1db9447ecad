"""pydantic validation errors as the API's field errors (`rules[2].when`)."""

from __future__ import annotations

from pydantic import ValidationError

from service.errors import FieldError


def field_errors(exc: ValidationError, *, prefix: str = "") -> list[FieldError]:
    """One FieldError per pydantic error, its location written as a path.

    pydantic's `msg` never carries the input value, so a masked feature cannot leak.
    """
    return [FieldError(field_path(err["loc"], prefix=prefix), err["msg"])
            for err in exc.errors()]


def field_path(loc: tuple[int | str, ...], *, prefix: str = "") -> str:
    """`("rules", 2, "when")` → `rules[2].when`."""
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"
