from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.errors import FieldError
from service.validation import (
    Envelope,
    FeatureRule,
    check_features,
    feature_errors,
    parse_envelope,
)

RULES = (FeatureRule("age", False, False), FeatureRule("income", False, True),
         FeatureRule("zip_code", True, True))


def _record(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "request_id": "r-1", "model": "credit", "features": {"age": 41, "income": 5.2e4,
                                                             "zip_code": "94110"},
        "prediction": {"score": 0.8, "threshold": 0.5}, "timestamp": "2026-11-25T18:00:00Z",
        "context": {"cohort": "canary"},
    }
    record.update(overrides)
    return record


def _parse(raw: object, path: str = "") -> Envelope | list[FieldError]:
    return parse_envelope(raw, path=path, received_ms=1, max_string=32, traceparent=None)


def test_valid_envelope_keeps_event_time_and_context() -> None:
    envelope = _parse(_record())
    assert isinstance(envelope, Envelope)
    assert envelope.event_ms == int(datetime(2026, 11, 25, 18, tzinfo=UTC).timestamp()) * 1000
    assert envelope.context == {"cohort": "canary"}


def test_traceparent_header_lands_in_context() -> None:
    envelope = parse_envelope(_record(), path="", received_ms=1, max_string=64,
                              traceparent="00-abc-def-01")
    assert isinstance(envelope, Envelope)
    assert envelope.context["traceparent"] == "00-abc-def-01"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [({"request_id": "bad id!"}, "request_id"), ({"request_id": "x" * 129}, "request_id"),
     ({"model": None}, "model"), ({"features": []}, "features"),
     ({"prediction": {}}, "prediction"), ({"prediction": {"score": "high"}}, "prediction.score"),
     ({"timestamp": "yesterday"}, "timestamp"), ({"extra": 1}, "extra"),
     ({"context": {"segment": "x" * 40}}, "context.segment")],
)
def test_envelope_errors_name_the_field(overrides: dict[str, Any], field: str) -> None:
    errors = _parse(_record(**overrides), path="records[3]")
    assert isinstance(errors, list)
    assert f"records[3].{field}" in [e.field for e in errors]


def test_not_an_object_is_an_error() -> None:
    errors = _parse([1, 2])
    assert isinstance(errors, list) and errors[0].field == "body"


@pytest.mark.parametrize(
    ("features", "field", "message"),
    [({"income": 1.0, "zip_code": "1"}, "features.age", "required"),
     ({"age": None, "income": 1.0, "zip_code": "1"}, "features.age", "missing value"),
     ({"age": "old", "income": 1.0, "zip_code": "1"}, "features.age", "expected a number"),
     ({"age": True, "income": 1.0, "zip_code": "1"}, "features.age", "expected a number"),
     ({"age": float("nan"), "income": 1.0, "zip_code": "1"}, "features.age", "finite"),
     ({"age": 1, "income": 1.0, "zip_code": [1]}, "features.zip_code", "category"),
     ({"age": 1, "income": 1.0, "zip_code": "1", "ssn": 2}, "features.ssn", "not a feature")],
)
def test_feature_errors_name_the_feature(features: dict[str, Any], field: str,
                                         message: str) -> None:
    errors = check_features(features, RULES, path="", model_label="credit@1", max_string=32)
    matching = [e for e in errors if e.field == field]
    assert matching and message in matching[0].message
    # The offending value itself is never echoed back.
    assert all("old" not in e.message for e in errors)


def test_nullable_features_accept_null_and_valid_rows_pass() -> None:
    features = {"age": 30, "income": None, "zip_code": None}
    assert check_features(features, RULES, path="", model_label="m", max_string=32) == []


_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=1))
_FEATURES = st.dictionaries(
    st.sampled_from(["age", "income", "zip_code", "extra"]), _VALUES, max_size=4)


@given(_FEATURES)
def test_fast_path_answers_exactly_as_the_detailed_checks(features: dict[str, Any]) -> None:
    fast = check_features(features, RULES, path="records[0]", model_label="credit@1",
                          max_string=32)
    detailed = feature_errors(features, RULES, path="records[0]", model_label="credit@1",
                              max_string=32)
    assert fast == detailed
