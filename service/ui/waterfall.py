"""The waterfall of one decision: base value, one bar per feature, model output."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup

from service.ui.status import StatusLook
from service.ui.svg import element, figure, text, titled

MAX_BARS = 40
"""Beyond this many features the smallest are summed into one bar (a readable chart)."""

_WIDTH = 1100
_ROW = 24
_TOP = 34
_PLOT_LEFT = 330
_PLOT_RIGHT = 850
_NUMBER_RIGHT = 950
_BADGE_LEFT = 965
_LABEL_CHARS = 44


@dataclass(frozen=True, slots=True)
class WaterfallStep:
    """One feature's contribution; `value` is the masked value as stored in the trace."""

    feature: str
    value: str
    attribution: float
    status: StatusLook | None = None
    """Drift status of the feature in the decision's window (None: no drift context)."""


def signed(value: float) -> str:
    """Format an attribution with its sign and four significant digits."""
    return f"{value:+.4g}"


def plain(value: float) -> str:
    """Format a base value or output with four significant digits."""
    return f"{value:.4g}"


def order_steps(steps: Sequence[WaterfallStep]) -> list[WaterfallStep]:
    """Largest |attribution| first; beyond MAX_BARS the rest become one summed bar."""
    ordered = sorted(steps, key=lambda s: (-abs(s.attribution), s.feature))
    if len(ordered) <= MAX_BARS:
        return ordered
    kept, rest = ordered[:MAX_BARS - 1], ordered[MAX_BARS - 1:]
    total = math.fsum(s.attribution for s in rest)
    return [*kept, WaterfallStep(f"({len(rest)} other features)", "", total)]


def _ticks(lo: float, hi: float) -> list[float]:
    span = hi - lo
    raw = span / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step) * step
    count = int((hi - first) / step) + 1
    return [first + i * step for i in range(max(count, 0))]


def _clip(label: str) -> str:
    return label if len(label) <= _LABEL_CHARS else label[:_LABEL_CHARS - 1] + "…"


def waterfall_svg(base: float, steps: Sequence[WaterfallStep], output: float, *,
                  output_space: str) -> Markup:
    """Render the chart; bars carry `data-feature` and `data-attribution` for tools."""
    points = [base]
    for step in steps:
        points.append(points[-1] + step.attribution)
    lo, hi = min([*points, output]), max([*points, output])
    pad = (hi - lo) * 0.05 or 0.5
    lo, hi = lo - pad, hi + pad

    def x(value: float) -> float:
        return _PLOT_LEFT + (value - lo) / (hi - lo) * (_PLOT_RIGHT - _PLOT_LEFT)

    height = _TOP + _ROW * (len(steps) + 2) + 10
    shapes: list[Markup] = [_axis(lo, hi, x, height)]
    shapes.append(_marker(0, x(base), f"base value  {plain(base)}", "wf-base"))
    for i, step in enumerate(steps):
        shapes.append(_bar(i + 1, step, x(points[i]), x(points[i + 1])))
    shapes.append(_marker(len(steps) + 1, x(output), f"output  {plain(output)}", "wf-output"))
    biggest = f"; largest {steps[0].feature} {signed(steps[0].attribution)}" if steps else ""
    label = (f"Waterfall from base value {plain(base)} to output {plain(output)} "
             f"({output_space}): {len(steps)} bars, largest |attribution| first{biggest}")
    return figure(_WIDTH, height, label=label, css="chart waterfall", children=shapes)


def _axis(lo: float, hi: float, x: Callable[[float], float], height: int) -> Markup:
    parts = [text(_PLOT_LEFT, 14, "model output (higher →)", css="axis-title")]
    for tick in _ticks(lo, hi):
        position = x(tick)
        parts.append(element("line", {"x1": position, "x2": position, "y1": 22,
                                      "y2": height - 6, "class": "grid"}))
        parts.append(text(position, 30, f"{tick:.3g}", css="tick", anchor="middle"))
    return element("g", {"aria-hidden": "true"}, parts)


def _row_y(row: int) -> float:
    return _TOP + row * _ROW


def _marker(row: int, position: float, label: str, css: str) -> Markup:
    y = _row_y(row)
    return element("g", {"class": css}, [
        element("line", {"x1": position, "x2": position, "y1": y + 2, "y2": y + _ROW - 2,
                         "class": "marker"}),
        text(_PLOT_LEFT - 10, y + 16, label, css="row-label strong", anchor="end"),
    ])


def _bar(row: int, step: WaterfallStep, start: float, end: float) -> Markup:
    y = _row_y(row)
    up = step.attribution >= 0
    left, width = min(start, end), max(abs(end - start), 1.0)
    arrow = "▶" if up else "◀"
    value = f" = {step.value}" if step.value else ""
    rect = element("rect", {
        "x": left, "y": y + 4, "width": width, "height": _ROW - 8,
        "class": "wf-bar " + ("wf-up" if up else "wf-down"),
        "data-feature": step.feature, "data-attribution": repr(float(step.attribution)),
    })
    direction = "raises" if up else "lowers"
    parts = [
        titled(rect, f"{step.feature}{value}: {direction} the output by "
                     f"{signed(step.attribution)}"),
        element("line", {"x1": end, "x2": end, "y1": y + _ROW - 4, "y2": y + _ROW + 4,
                         "class": "connector"}),
        text(_PLOT_LEFT - 10, y + 16, _clip(f"{step.feature}{value}"), css="row-label",
             anchor="end"),
        text(_NUMBER_RIGHT, y + 16, f"{signed(step.attribution)} {arrow}",
             css="wf-number " + ("wf-up-text" if up else "wf-down-text"), anchor="end"),
    ]
    if step.status is not None:
        parts.append(text(_BADGE_LEFT, y + 16, f"{step.status.symbol} {step.status.word}",
                          css="badge-text " + step.status.css))
    return element("g", {"class": "wf-row"}, parts)
