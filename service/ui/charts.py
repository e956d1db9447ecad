"""Server-side SVG charts of the model and incident pages (each page also shows a table)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup

from service.ui.status import CELL_FILL, StatusLook
from service.ui.svg import element, figure, text, titled

_LABEL_W = 230
_CELL_W = 78
_CELL_H = 24


@dataclass(frozen=True, slots=True)
class HeatCell:
    """One feature in one window: its status and PSI (None when withheld or unknown)."""

    status: StatusLook
    psi: float | None


def _short(label: str, limit: int = 30) -> str:
    return label if len(label) <= limit else label[:limit - 1] + "…"


def heatmap_svg(rows: Sequence[str], columns: Sequence[str],
                cells: Sequence[Sequence[HeatCell]], *, label: str) -> Markup:
    """Feature × window grid; every cell shows a status symbol and its PSI as text."""
    width = _LABEL_W + _CELL_W * max(len(columns), 1) + 10
    height = 30 + _CELL_H * len(rows) + 6
    shapes: list[Markup] = []
    for j, column in enumerate(columns):
        shapes.append(text(_LABEL_W + _CELL_W * j + _CELL_W / 2, 20, column, css="tick",
                           anchor="middle"))
    for i, row in enumerate(rows):
        y = 30 + _CELL_H * i
        shapes.append(text(_LABEL_W - 8, y + 16, _short(row), css="row-label", anchor="end"))
        for j, cell in enumerate(cells[i]):
            x = _LABEL_W + _CELL_W * j
            psi = "—" if cell.psi is None else f"{cell.psi:.2f}"
            rect = element("rect", {"x": x + 1, "y": y + 1, "width": _CELL_W - 2,
                                    "height": _CELL_H - 2, "fill": CELL_FILL[cell.status.css],
                                    "class": "cell " + cell.status.css,
                                    "data-status": cell.status.key})
            shapes.append(titled(rect, f"{row}, window ending {columns[j]}: "
                                       f"{cell.status.word}, PSI {psi}"))
            shapes.append(text(x + _CELL_W / 2, y + 16, f"{cell.status.symbol} {psi}",
                               css="cell-text", anchor="middle",
                               extra={"aria-hidden": "true"}))
    return figure(width, height, label=label, css="chart heatmap", children=shapes)


def paired_bars_svg(rows: Sequence[str], reference: Sequence[float | None],
                    current: Sequence[float | None], *, names: tuple[str, str],
                    label: str, percent: bool) -> Markup:
    """Two horizontal bars per row: the reference outlined, the current one solid."""
    width, bar_left, bar_right = 1100, _LABEL_W, 900
    row_h = 30
    height = 40 + row_h * len(rows) + 4
    values = [v for v in [*reference, *current] if v is not None]
    top = max(values, default=0.0) or 1.0

    def fmt(value: float | None) -> str:
        if value is None:
            return "n/a"
        return f"{value * 100:.1f}%" if percent else f"{value:.4g}"

    shapes: list[Markup] = [
        element("rect", {"x": bar_left, "y": 6, "width": 14, "height": 10,
                         "class": "bar-reference"}),
        text(bar_left + 20, 15, names[0], css="legend"),
        element("rect", {"x": bar_left + 220, "y": 6, "width": 14, "height": 10,
                         "class": "bar-current"}),
        text(bar_left + 240, 15, names[1], css="legend"),
    ]
    for i, row in enumerate(rows):
        y = 30 + row_h * i
        shapes.append(text(bar_left - 8, y + 18, _short(row), css="row-label", anchor="end"))
        for k, (value, css, name) in enumerate(((reference[i], "bar-reference", names[0]),
                                                (current[i], "bar-current", names[1]))):
            length = 0.0 if value is None else max(value, 0.0) / top * (bar_right - bar_left)
            bar_y = y + 4 + k * 12
            rect = element("rect", {"x": bar_left, "y": bar_y, "width": max(length, 0.5),
                                    "height": 10, "class": css})
            shapes.append(titled(rect, f"{row}, {name}: {fmt(value)}"))
            shapes.append(text(bar_left + length + 6, bar_y + 9, f"{name} {fmt(value)}",
                               css="bar-number", extra={"aria-hidden": "true"}))
    return figure(width, height, label=label, css="chart paired", children=shapes)


def strips_svg(rows: Sequence[str], columns: Sequence[str], counts: Sequence[Sequence[int]],
               *, label: str) -> Markup:
    """Small multiples: one row of bars per series, one bar per time bucket, with counts."""
    row_h = 40
    cell_w = min(70, max(16, (1100 - _LABEL_W - 60) // max(len(columns), 1)))
    width = _LABEL_W + cell_w * max(len(columns), 1) + 70
    height = 24 + row_h * len(rows) + 24
    top = max((c for row in counts for c in row), default=0) or 1
    shapes: list[Markup] = []
    for i, row in enumerate(rows):
        y = 20 + row_h * i
        shapes.append(text(_LABEL_W - 8, y + row_h - 12, _short(row), css="row-label",
                           anchor="end"))
        shapes.append(element("line", {"x1": _LABEL_W, "x2": _LABEL_W + cell_w * len(columns),
                                       "y1": y + row_h - 6, "y2": y + row_h - 6,
                                       "class": "grid"}))
        for j, count in enumerate(counts[i]):
            h = count / top * (row_h - 14)
            rect = element("rect", {"x": _LABEL_W + cell_w * j + 2, "y": y + row_h - 6 - h,
                                    "width": cell_w - 4, "height": max(h, 0.0),
                                    "class": "bar-current"})
            shapes.append(titled(rect, f"{row}, {columns[j]}: {count}"))
        shapes.append(text(_LABEL_W + cell_w * len(columns) + 8, y + row_h - 10,
                           f"Σ {sum(counts[i])}", css="bar-number"))
    for j, column in enumerate(columns):
        if len(columns) <= 12 or j % max(len(columns) // 12, 1) == 0:
            shapes.append(text(_LABEL_W + cell_w * j + cell_w / 2, height - 6, column,
                               css="tick", anchor="middle"))
    return figure(width, height, label=label, css="chart strips", children=shapes)
