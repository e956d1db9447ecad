"""The fast evaluator agrees with jmespath itself on every covered expression and record."""

from __future__ import annotations

import json
from typing import Any

import jmespath
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jmespath import exceptions as jmespath_errors

from service.sampling.fastpath import compile_fast
from service.sampling.functions import PolicyFunctions

EXPRESSIONS = [
    "a", "a.b", "a.b.c", "features.x", "@", "`1`", "'s'", "`null`",
    "a == `1`", "a != `1`", "a == `true`", "a == `0`", "a == `false`", "a == 'x'",
    "a == b", "a.b == `[1, 2]`", "a == `{}`",
    "a < `1`", "a <= `1.5`", "a > b", "a >= 'm'", "a.b > `0` && c", "a || b", "a && b",
    "!a", "!a.b", "!(a && b) || c", "a && b || !c", "@ == `null`",
    "distance(a, b) <= `0.05`", "distance(a, `0.5`)", "distance(features.x, a.b)",
    "context.cohort == 'canary' && distance(prediction.score, prediction.threshold || `0.5`)"
    " <= `0.05`",
]
KEYS = st.sampled_from(["a", "b", "c", "x", "features", "context", "cohort", "prediction",
                        "score", "threshold"])
SCALARS = (st.none() | st.booleans() | st.integers(-3, 3)
           | st.floats(-2, 2, allow_nan=False, allow_infinity=False)
           | st.sampled_from(["", "x", "m", "canary", "z"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(KEYS, inner, max_size=4), max_leaves=10)
RECORDS = st.dictionaries(KEYS, VALUES, max_size=6)


def outcome(evaluate: Any, record: Any) -> tuple[str, str]:
    try:
        return "ok", json.dumps(evaluate(record), sort_keys=True)
    except (jmespath_errors.JMESPathError, TypeError, ValueError):
        return "error", ""


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_every_corpus_expression_takes_the_fast_path(expression: str) -> None:
    assert compile_fast(jmespath.compile(expression)) is not None


def test_other_node_types_are_left_to_jmespath() -> None:
    for expression in ("a[0]", "a[?b > `1`]", "length(a)", "a | b", "{x: a}"):
        assert compile_fast(jmespath.compile(expression)) is None


@settings(max_examples=150, deadline=None)
@given(RECORDS)
def test_fast_path_matches_jmespath_on_random_records(record: dict[str, Any]) -> None:
    options = jmespath.Options(custom_functions=PolicyFunctions())
    for expression in EXPRESSIONS:
        parsed = jmespath.compile(expression)
        fast = compile_fast(parsed)
        assert fast is not None
        reference = outcome(lambda value, parsed=parsed: parsed.search(value, options=options),
                            record)
        assert outcome(fast, record) == reference, expression
