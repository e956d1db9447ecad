"""A policy compiled once per version: rules in order, JMESPath parsed ahead of time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jmespath
from jmespath import exceptions as jmespath_errors
from jmespath.parser import ParsedResult

from service.sampling.document import PolicyBudget, PolicyDocument
from service.sampling.fastpath import Evaluator, compile_fast
from service.sampling.functions import PolicyFunctions
from service.sampling.policy import SamplingDecision, stable_fraction


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """One rule with its expression parsed, and the function that evaluates it."""

    reason: str
    expression: ParsedResult | None
    evaluate: Evaluator | None
    rate: float
    counterfactuals: int
    decision: SamplingDecision
    """The decision when the rule matches and the hash is below its rate (built once)."""


class CompiledPolicy:
    """Decides for one record: the first rule whose `when` holds decides, at its rate."""

    def __init__(self, model: str, version: str, document: PolicyDocument, *,
                 on_error: Callable[[int], None] = lambda rule: None) -> None:
        self.model = model
        self.count_error = on_error
        """Counts a rule that failed on a record (its index)."""
        self.version = version
        self.document = document
        self.label = f"{model}@{version}"
        self.budget: PolicyBudget | None = document.budget
        self.exempt = frozenset(document.budget.exempt if document.budget else ())
        self.incident_counterfactuals = document.incident_counterfactuals
        self._options = jmespath.Options(custom_functions=PolicyFunctions())
        self.not_sampled = SamplingDecision(False, None, self.label)
        rules = []
        for rule in document.rules:
            parsed = None if rule.when is None else jmespath.compile(rule.when)
            rules.append(CompiledRule(
                rule.reason, parsed, self._evaluator(parsed), rule.rate, rule.counterfactuals,
                SamplingDecision(True, rule.reason, self.label,
                                 counterfactuals=rule.counterfactuals)))
        self.rules = tuple(rules)
        self.reads_record = any(rule.evaluate is not None for rule in self.rules)

    def _evaluator(self, parsed: ParsedResult | None) -> Evaluator | None:
        if parsed is None:
            return None
        fast = compile_fast(parsed)
        if fast is not None:
            return fast
        options = self._options
        return lambda value: parsed.search(value, options=options)

    def decide(self, request_id: str, view: dict[str, Any] | None, *,
               on_error: Callable[[int], None]) -> SamplingDecision:
        """Decide for one record (`view`: the JMESPath input, needed when `reads_record`).

        A rule whose expression fails on this record (a type error on a null feature, a
        number compared with a string) does not match; `on_error(rule index)` counts it.
        """
        for index, rule in enumerate(self.rules):
            if rule.evaluate is not None:
                try:
                    matched = truthy(rule.evaluate(view))
                except (jmespath_errors.JMESPathError, TypeError, ValueError):
                    on_error(index)
                    matched = False
                if not matched:
                    continue
            if rule.rate >= 1.0 or (rule.rate > 0.0 and stable_fraction(request_id) < rule.rate):
                return rule.decision
            return self.not_sampled
        return self.not_sampled


def truthy(value: object) -> bool:
    """JMESPath truthiness of a search result."""
    # JMESPath truthiness: false, null and empty strings, lists and objects are false; 0 is true.
    return not (value is None or value is False or value in ("", [], {}))
