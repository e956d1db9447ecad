"""The sampling policy document (JSON or YAML) and its validation into field errors."""

from __future__ import annotations

from typing import Any

import jmespath
import orjson
import yaml
from jmespath import exceptions as jmespath_errors
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.errors import FieldError, RecordInvalid
from service.sampling.functions import PolicyFunctions
from service.validation_errors import field_errors

REASON_PATTERN = r"^[a-z][a-z0-9_.-]{0,63}$"
INCIDENT_REASON = "incident"
# Reasons the service gives itself; a rule naming one would make traces ambiguous.
RESERVED_REASONS = frozenset({INCIDENT_REASON, "on_demand"})
MAX_RULES = 100
# What a rule's `when` sees; `features` are the raw values (the policy never stores them).
SAMPLE_RECORD: dict[str, Any] = {"features": {}, "prediction": {}, "context": {},
                                 "action": None, "model": "", "version": ""}


class PolicyRule(BaseModel):
    """One rule: the first whose `when` holds decides, at `rate` (a stable hash)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(pattern=REASON_PATTERN)
    """Stored as the trace's `sampling.reason`."""
    when: str | None = Field(default=None, min_length=1, max_length=2000)
    """JMESPath over {features, prediction, context, action, model, version}; absent: always."""
    rate: float = Field(default=1.0, ge=0.0, le=1.0)
    """Share of matching records explained (stable per request ID); 0 excludes them."""
    counterfactuals: int = Field(default=0, ge=0)
    """Counterfactuals computed for the traces this rule samples."""


class PolicyBudget(BaseModel):
    """A token bucket of explanations per second per model (shared by replicas on Redis)."""

    model_config = ConfigDict(extra="forbid")

    per_second: float = Field(gt=0)
    burst: float | None = Field(default=None, ge=1)
    """Bucket size (default: per_second, at least 1)."""
    exempt: list[str] = Field(default_factory=lambda: ["canary", INCIDENT_REASON])
    """Reasons never deferred by the budget."""

    @property
    def capacity(self) -> float:
        """Tokens the bucket holds when full."""
        return self.burst if self.burst is not None else max(1.0, self.per_second)


class PolicyDocument(BaseModel):
    """A model's sampling policy, as published and as `PUT /v1/models/{name}/policy` takes it."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(default=None, max_length=2000)
    rules: list[PolicyRule] = Field(default_factory=list, max_length=MAX_RULES)
    budget: PolicyBudget | None = None
    incident_counterfactuals: int = Field(default=0, ge=0)
    """Counterfactuals of traces explained because the model is in incident mode."""


def load_policy_text(data: bytes, *, yaml_text: bool) -> object:
    """Parse a policy body (JSON, or YAML when the caller says so)."""
    try:
        return yaml.safe_load(data) if yaml_text else orjson.loads(data)
    except (yaml.YAMLError, orjson.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RecordInvalid([FieldError("body", f"not valid {'YAML' if yaml_text else 'JSON'}: "
                                                f"{str(exc).splitlines()[0]}")]) from None


def validate_policy(raw: object, *, max_counterfactuals: int) -> PolicyDocument:
    """Check a policy document; raise RecordInvalid naming each bad field (`rules[2].when`)."""
    try:
        document = PolicyDocument.model_validate(raw)
    except ValidationError as exc:
        raise RecordInvalid(field_errors(exc)) from None
    errors: list[FieldError] = []
    functions = PolicyFunctions()
    for i, rule in enumerate(document.rules):
        if rule.reason in RESERVED_REASONS:
            errors.append(FieldError(f"rules[{i}].reason", f"{rule.reason!r} is reserved"))
        if rule.counterfactuals > max_counterfactuals:
            errors.append(FieldError(f"rules[{i}].counterfactuals",
                                     f"at most {max_counterfactuals}"))
        if rule.when is not None:
            message = expression_error(rule.when, functions)
            if message is not None:
                errors.append(FieldError(f"rules[{i}].when", message))
    if document.incident_counterfactuals > max_counterfactuals:
        errors.append(FieldError("incident_counterfactuals", f"at most {max_counterfactuals}"))
    if errors:
        raise RecordInvalid(errors)
    return document


def expression_error(text: str, functions: PolicyFunctions) -> str | None:
    """Return why a JMESPath expression is unusable, or None when it is fine."""
    try:
        parsed = jmespath.compile(text)
    except jmespath_errors.JMESPathError as exc:
        return "invalid JMESPath: " + " ".join(str(exc).split())
    try:
        parsed.search(SAMPLE_RECORD, options=jmespath.Options(custom_functions=functions))
    except (jmespath_errors.UnknownFunctionError, jmespath_errors.ArityError) as exc:
        return "invalid JMESPath: " + " ".join(str(exc).split())
    except jmespath_errors.JMESPathError:
        # Type errors depend on the record (a null feature); they are no-match at run time.
        return None
    return None
