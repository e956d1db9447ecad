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


def logged_trace_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The same keyword arguments, from a record log entry (`decision_fields` wrote them)."""
    asked = int(body.get("counterfactuals") or 0)
    return {"counterfactuals": CounterfactualAsk(asked) if asked > 0 else None,
            "incidents": tuple(str(i) for i in body.get("incidents") or ())}
