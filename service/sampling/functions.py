"""JMESPath functions the policy adds to the standard ones (JMESPath has no arithmetic)."""

from __future__ import annotations

from jmespath import functions


class PolicyFunctions(functions.Functions):
    """`distance(a, b)`: |a − b|, or null when either side is null."""

    @functions.signature({"types": ["number", "null"]}, {"types": ["number", "null"]})
    def _func_distance(self, left: float | None, right: float | None) -> float | None:
        if left is None or right is None:
            return None
        return abs(left - right)
