"""Triage page rendering without a browser: escaping, chart geometry, robustness."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np

import service.ui
from service.ui.rendering import build_environment
from service.ui.status import worst
from service.ui.svg import element
from service.ui.trace_page import trace_view
from service.ui.waterfall import MAX_BARS, WaterfallStep, order_steps, waterfall_svg

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>alert("x")</script>'


def test_ui_package_exports_only_its_router() -> None:
    assert service.ui.__all__ == ["router"]


def test_svg_writer_escapes_attributes_and_text() -> None:
    markup = str(element("text", {"data-x": HOSTILE}, [HOSTILE]))
    assert "<script>" not in markup
    assert ET.fromstring(markup).text == HOSTILE
    assert ET.fromstring(markup).get("data-x") == HOSTILE


def _bars(attributions: list[float]) -> list[ET.Element]:
    steps = order_steps([WaterfallStep(f"f{i}", str(i), a) for i, a in enumerate(attributions)])
    base = -1.3
    svg = ET.fromstring(str(waterfall_svg(base, steps, base + math.fsum(attributions),
                                          output_space="log_odds")))
    return [r for r in svg.iter(f"{SVG}rect") if "wf-bar" in (r.get("class") or "")]


def test_waterfall_bars_chain_from_base_to_output_on_one_scale() -> None:
    attributions = list(np.random.default_rng(4).normal(0, 0.3, 12))
    bars = _bars(attributions)
    assert len(bars) == 12
    values = [float(b.get("data-attribution") or "nan") for b in bars]
    assert sorted(values, key=lambda v: -abs(v)) == values
    assert sorted(values) == sorted(attributions)
    scales = [float(b.get("width") or 0) / abs(v) for b, v in zip(bars, values, strict=True)
              if float(b.get("width") or 0) > 2]
    assert max(scales) - min(scales) < 0.05 * max(scales)
    # Each bar starts where the previous one ended (positive bars grow right).
    ends = []
    for bar, value in zip(bars, values, strict=True):
        left, width = float(bar.get("x") or 0), float(bar.get("width") or 0)
        start, end = (left, left + width) if value >= 0 else (left + width, left)
        if ends:
            assert abs(start - ends[-1]) < 0.02 or width <= 1.0
        ends.append(end)


def test_waterfall_sums_the_smallest_features_beyond_the_bar_limit() -> None:
    attributions = [0.01 * (i + 1) * (-1) ** i for i in range(MAX_BARS + 10)]
    steps = order_steps([WaterfallStep(f"f{i}", "", a) for i, a in enumerate(attributions)])
    assert len(steps) == MAX_BARS
    assert steps[-1].feature == "(11 other features)"
    assert math.fsum(s.attribution for s in steps) == math.fsum(attributions)


def test_worst_status_ranks_drift_over_warn_over_ok_over_too_few_records() -> None:
    assert worst(["ok", "drift", "warn", "insufficient_data"]).key == "drift"
    assert worst(["ok", "insufficient_data"]).key == "ok"
    assert worst(["insufficient_data"]).key == "insufficient_data"
    assert worst([]).key == "unknown"
    assert worst([None, 3]).key == "unknown"


def _render(document: dict[str, object]) -> str:
    return build_environment().get_template("trace.html").render(**trace_view(document))


def test_trace_page_escapes_every_string_of_the_trace() -> None:
    html = _render({
        "request_id": "r-1", "model": {"name": HOSTILE, "version": HOSTILE},
        "context": {"cohort": HOSTILE, HOSTILE: HOSTILE},
        "features": {HOSTILE: HOSTILE}, "incidents": [HOSTILE],
        "explanation": {"base_value": 0.1, "output_value": 0.6, "output_space": HOSTILE,
                        "attributions": {HOSTILE: 0.5}},
        "counterfactuals": [{"changes": {HOSTILE: {"from": HOSTILE, "to": HOSTILE}}}],
    })
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_trace_page_renders_a_trace_with_only_its_request_id() -> None:
    html = _render({"request_id": "r-2"})
    assert "No explanation in this trace" in html
    assert "Drift context unavailable" in html
    assert "No counterfactuals in this trace" in html
