"""Parsing counterfactual asks and FEATURES.yaml constraints (no model needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from explainers.types import FeatureKind, FeatureSpec, ModelSchema, Task
from service.counterfactuals import parse_ask
from service.errors import RecordInvalid
from service.publishing import read_constraints
from service.settings import CounterfactualSettings, LimitSettings

LIMITS = LimitSettings(counterfactuals=5)
SETTINGS = CounterfactualSettings(default_count=3)


def test_no_ask_means_no_search() -> None:
    assert parse_ask(None, None, limits=LIMITS, settings=SETTINGS) is None
    assert parse_ask(0, {"immutable": ["a"]}, limits=LIMITS, settings=SETTINGS) is None


def test_body_object_alone_asks_the_default_count() -> None:
    ask = parse_ask(None, {"weights": {"a": 2.0}}, limits=LIMITS, settings=SETTINGS)
    assert ask is not None and ask.count == 3
    assert ask.overrides.weights == {"a": 2.0}


def test_count_above_the_limit_is_refused() -> None:
    with pytest.raises(RecordInvalid) as caught:
        parse_ask(6, None, limits=LIMITS, settings=SETTINGS)
    assert caught.value.errors[0].field == "counterfactuals"


def test_malformed_object_names_the_field_without_echoing_values() -> None:
    with pytest.raises(RecordInvalid) as caught:
        parse_ask(2, {"ranges": {"income": {"min": "secret-value"}}}, limits=LIMITS,
                  settings=SETTINGS)
    assert caught.value.errors[0].field == "counterfactuals.ranges.income.min"
    assert "secret-value" not in str(caught.value)


def _schema() -> ModelSchema:
    return ModelSchema((FeatureSpec("debt", FeatureKind.NUMERIC),
                        FeatureSpec("credit_limit", FeatureKind.NUMERIC),
                        FeatureSpec("zip", FeatureKind.CATEGORICAL, ("1", "2"))), Task.BINARY)


def test_features_yaml_constraints_are_read_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "FEATURES.yaml"
    path.write_text("features: []\nconstraints:\n  - debt <= credit_limit\n", encoding="utf-8")
    assert read_constraints(path, _schema()) == ["debt <= credit_limit"]
    assert read_constraints(None, _schema()) == []
    for bad in ("debt <= zip", "debt = credit_limit", "debt <= nope"):
        path.write_text(f"features: []\nconstraints: ['{bad}']\n", encoding="utf-8")
        with pytest.raises(RecordInvalid) as caught:
            read_constraints(path, _schema())
        assert caught.value.errors[0].field == "constraints[0]"
