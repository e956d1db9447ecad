"""How a drift status is shown: a symbol and a word beside the colour, never colour alone."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StatusLook:
    """Symbol, word and CSS class of one status; `rank` orders severity."""

    key: str
    symbol: str
    word: str
    css: str
    rank: int


_LOOKS = {
    "drift": StatusLook("drift", "✖", "drift", "st-drift", 3),
    "warn": StatusLook("warn", "▲", "warn", "st-warn", 2),
    "ok": StatusLook("ok", "✓", "ok", "st-ok", 1),
    "insufficient_data": StatusLook("insufficient_data", "…", "too few records", "st-none", 0),
}
UNKNOWN = StatusLook("unknown", "–", "unavailable", "st-unknown", -1)

CELL_FILL = {"st-drift": "#f4a7a7", "st-warn": "#ffe08a", "st-ok": "#cfe8cf",
             "st-none": "#e8e8e8", "st-unknown": "#ffffff"}
"""Light fills so dark text stays readable on every cell (contrast above 7:1)."""


def look(status: object) -> StatusLook:
    """Return how to show a status value (unknown values get the neutral look)."""
    return _LOOKS.get(status, UNKNOWN) if isinstance(status, str) else UNKNOWN


def worst(statuses: Iterable[object]) -> StatusLook:
    """The most severe status among several (unknown if none is known)."""
    found = [look(s) for s in statuses]
    return max(found, key=lambda s: s.rank, default=UNKNOWN)
