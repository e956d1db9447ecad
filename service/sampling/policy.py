"""Sampling decisions, the stable hash behind rates, and the default policy document."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from service.sampling.document import PolicyBudget, PolicyDocument, PolicyRule
from service.settings import SamplingSettings

_HASH_SPACE = float(2**64)


@dataclass(frozen=True, slots=True)
class SamplingDecision:
    """Whether one record is explained, the reason stored in its trace, and the policy.

    A `deferred` decision was sampled by a rule but refused by the budget: the record is
    logged with `sampled=False` and its rule's reason, so it can be listed and backfilled.
    """

    sampled: bool
    reason: str | None
    policy: str
    counterfactuals: int = 0
    incidents: tuple[str, ...] = ()
    deferred: bool = False


def stable_fraction(request_id: str) -> float:
    """Map a request ID to [0, 1) the same way in every process and replay."""
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _HASH_SPACE


def default_policy_document(settings: SamplingSettings) -> PolicyDocument:
    """The policy of models without a published one, from `settings.sampling`.

    Always-explained cohorts (reason: the cohort), then near-threshold decisions, then
    `rate` of the rest (reason `sampled`).
    """
    # model_construct: a cohort name is the reason verbatim, as it always was.
    rules = [PolicyRule.model_construct(reason=cohort, rate=1.0, counterfactuals=0,
                                        when=f"context.cohort == {_jmespath_string(cohort)}")
             for cohort in settings.always_cohorts]
    if settings.near_threshold > 0:
        rules.append(PolicyRule(
            reason="near_threshold",
            when=("distance(prediction.score, prediction.threshold || `0.5`) <= "
                  f"`{settings.near_threshold!r}`")))
    if settings.rate > 0:
        rules.append(PolicyRule(reason="sampled", rate=settings.rate))
    budget = None
    if settings.budget_per_s is not None:
        budget = PolicyBudget(per_second=settings.budget_per_s, burst=settings.budget_burst,
                              exempt=list(settings.budget_exempt))
    return PolicyDocument(description="default policy (WHYLENS_SAMPLING__*)", rules=rules,
                          budget=budget)


def _jmespath_string(text: str) -> str:
    # A raw string literal: single quotes, with quotes and backslashes escaped.
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def decision_fields(decision: SamplingDecision) -> dict[str, Any]:
    """Extra fields of the record log entry for a decision (deferral, incident links)."""
    fields: dict[str, Any] = {}
    if decision.deferred:
        fields["deferred"] = True
    if decision.incidents:
        fields["incidents"] = list(decision.incidents)
    if decision.counterfactuals:
        fields["counterfactuals"] = decision.counterfactuals
    return fields


def sampling_label(sampled: bool, reason: str | None, decision: SamplingDecision | None) -> str:
    """The `reason` label of whylens_sampling_decisions_total for one record."""
    if sampled and reason is not None:
        return reason
    return "deferred" if decision is not None and decision.deferred else "not_sampled"
