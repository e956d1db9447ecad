"""The shipped alerting rules are valid and only use series that /metrics exposes."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import yaml

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus-rules.yml"
DURATION = re.compile(r"^[0-9]+[smhd]$")
PROMQL_FUNCTIONS = {"max", "min", "sum", "by", "min_over_time", "rate", "time"}


def test_promtool_accepts_the_rules_file() -> None:
    # `make test` puts promtool beside the interpreter (scripts/ensure_promtool.py).
    promtool = shutil.which("promtool") or shutil.which(
        "promtool", path=str(Path(sys.executable).parent))
    assert promtool is not None, "promtool is missing: run `make services`"
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def _rules() -> list[dict[str, object]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    groups = document["groups"]
    assert groups and all({"name", "rules"} <= set(g) for g in groups)
    return [rule for group in groups for rule in group["rules"]]


def test_rules_have_the_alerting_structure() -> None:
    rules = _rules()
    severities = set()
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert isinstance(rule["alert"], str) and isinstance(rule["expr"], str)
        assert DURATION.match(str(rule["for"]))
        labels = rule["labels"]
        assert isinstance(labels, dict)
        severities.add(labels["severity"])
        annotations = rule["annotations"]
        assert isinstance(annotations, dict) and "summary" in annotations
    assert severities == {"ticket", "page"}
    persisting = [r for r in rules if r["labels"]["severity"] == "page"]  # type: ignore[index]
    assert all("min_over_time" in str(r["expr"]) for r in persisting)


async def test_rules_only_use_series_that_metrics_exposes(client: httpx.AsyncClient) -> None:
    text = (await client.get("/metrics")).text
    exposed = set(re.findall(r"^# TYPE (\w+)", text, flags=re.MULTILINE))
    exposed |= set(re.findall(r"^(whylens_\w+?)(?:\{| )", text, flags=re.MULTILINE))
    for rule in _rules():
        names = set(re.findall(r"\b(whylens_\w+)", str(rule["expr"])))
        assert names, rule["alert"]
        assert names <= exposed, (rule["alert"], names - exposed)
        words = set(re.findall(r"\b([a-z_]+)\s*\(", str(rule["expr"])))
        assert words <= PROMQL_FUNCTIONS, words
