"""The common JMESPath node types evaluated as Python closures, for the ingest hot path.

jmespath parses every rule (the language and its grammar stay jmespath's); this module
only evaluates the parsed tree of the node types policies use most (fields,
sub-expressions, literals, comparisons, `&&`, `||`, `!`, `@` and `distance()`) with
jmespath's own semantics, about ten times faster than its tree interpreter. A rule
with any other node type is evaluated by jmespath itself. A property test checks both
agree on random records (tests/unit/service/test_sampling_fastpath.py).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from numbers import Number
from typing import Any

from jmespath import exceptions as jmespath_errors
from jmespath.parser import ParsedResult

Evaluator = Callable[[Any], Any]


class _Unsupported(Exception):
    """A node type this module leaves to jmespath."""


def compile_fast(parsed: ParsedResult) -> Evaluator | None:
    """Closures evaluating the parsed expression, or None when a node is not covered."""
    try:
        tree: dict[str, Any] = dict(parsed.parsed)
        return _build(tree)
    except _Unsupported:
        return None


def _build(node: dict[str, Any]) -> Evaluator:
    builder = _BUILDERS.get(node["type"])
    if builder is None:
        raise _Unsupported(node["type"])
    return builder(node)


def _field(node: dict[str, Any]) -> Evaluator:
    name = node["value"]

    def field(value: Any) -> Any:
        # As jmespath: anything without .get (null, lists, strings) gives null.
        try:
            return value.get(name)
        except AttributeError:
            return None

    return field


def _path(names: list[str]) -> Evaluator:
    first, second = names if len(names) == 2 else (None, None)
    if first is not None and second is not None:

        def pair(value: Any) -> Any:
            try:
                return value.get(first).get(second)
            except AttributeError:
                return None

        return pair

    def walk(value: Any) -> Any:
        try:
            for name in names:
                value = value.get(name)
        except AttributeError:
            return None
        return value

    return walk


def _subexpression(node: dict[str, Any]) -> Evaluator:
    children = node["children"]
    if all(child["type"] == "field" for child in children):
        return _path([child["value"] for child in children])
    steps = [_build(child) for child in children]
    if len(steps) == 2:
        first, second = steps

        def pair(value: Any) -> Any:
            return second(first(value))

        return pair

    def chain(value: Any) -> Any:
        for step in steps:
            value = step(value)
        return value

    return chain


def _literal(node: dict[str, Any]) -> Evaluator:
    constant = node["value"]
    return lambda value: constant


def _current(node: dict[str, Any]) -> Evaluator:
    return lambda value: value


def _is_number(value: Any) -> bool:
    kind = type(value)
    if kind is float or kind is int:
        return True
    return kind is not bool and isinstance(value, Number)


def _equals(left: Any, right: Any) -> bool:
    # jmespath: 0 and 1 never equal false and true.
    if _is_number(left) and left in (0, 1):
        if isinstance(right, bool):
            return False
    elif _is_number(right) and right in (0, 1) and isinstance(left, bool):
        return False
    return bool(left == right)


_ORDERING = {"lt": operator.lt, "gt": operator.gt, "lte": operator.le, "gte": operator.ge}


def _comparator(node: dict[str, Any]) -> Evaluator:
    left_of, right_of = (_build(child) for child in node["children"])
    op = node["value"]
    if op == "eq":
        return lambda value: _equals(left_of(value), right_of(value))
    if op == "ne":
        return lambda value: not _equals(left_of(value), right_of(value))
    compare = _ORDERING[op]

    def ordering(value: Any) -> Any:
        left, right = left_of(value), right_of(value)
        # Numbers and strings only (a number against a string raises, as in jmespath).
        if not ((_is_number(left) or isinstance(left, str))
                and (_is_number(right) or isinstance(right, str))):
            return None
        return compare(left, right)

    return ordering


def _is_false(value: Any) -> bool:
    return value is None or value is False or value in ("", [], {})


def _and(node: dict[str, Any]) -> Evaluator:
    left_of, right_of = (_build(child) for child in node["children"])

    def both(value: Any) -> Any:
        left = left_of(value)
        return left if _is_false(left) else right_of(value)

    return both


def _or(node: dict[str, Any]) -> Evaluator:
    left_of, right_of = (_build(child) for child in node["children"])

    def either(value: Any) -> Any:
        left = left_of(value)
        return right_of(value) if _is_false(left) else left

    return either


def _not(node: dict[str, Any]) -> Evaluator:
    (child,) = (_build(c) for c in node["children"])

    def negate(value: Any) -> bool:
        result = child(value)
        if _is_number(result) and result == 0:
            return False
        return not result

    return negate


def _function(node: dict[str, Any]) -> Evaluator:
    if node["value"] != "distance" or len(node["children"]) != 2:
        raise _Unsupported(node["value"])
    left_of, right_of = (_build(child) for child in node["children"])

    def distance(value: Any) -> Any:
        left, right = left_of(value), right_of(value)
        for argument in (left, right):
            if argument is not None and not _is_number(argument):
                raise jmespath_errors.JMESPathTypeError(
                    "distance", argument, type(argument).__name__, ["number", "null"])
        if left is None or right is None:
            return None
        return abs(left - right)

    return distance


_BUILDERS: dict[str, Callable[[dict[str, Any]], Evaluator]] = {
    "field": _field, "subexpression": _subexpression, "literal": _literal,
    "current": _current, "comparator": _comparator, "and_expression": _and,
    "or_expression": _or, "not_expression": _not, "function_expression": _function,
}
