"""What a sampling decision passes on to the trace it asks for."""

from __future__ import annotations

from typing import Any

from service.counterfactuals import CounterfactualAsk
from service.sampling.policy import SamplingDecision


def trace_request_fields(decision: SamplingDecision | None) -> dict[str, Any]:
    """`TraceRequest` keyword arguments carrying a decision's counterfactuals and incidents."""
    if decision is None:
        return {}
    ask = CounterfactualAsk(decision.counterfactuals) if decision.counterfactuals > 0 else None
    return {"counterfactuals": ask, "incidents": decision.incidents}
