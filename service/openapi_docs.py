"""OpenAPI descriptions of the bodies that routes parse themselves (for speed)."""

from __future__ import annotations

from typing import Any

_SCALAR: dict[str, Any] = {"anyOf": [{"type": "string"}, {"type": "number"},
                                     {"type": "boolean"}, {"type": "null"}]}

RECORD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["request_id", "model", "features", "prediction"],
    "additionalProperties": False,
    "properties": {
        "request_id": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
        "model": {"type": "string"},
        "version": {"type": "string"},
        "features": {"type": "object", "additionalProperties": _SCALAR},
        "prediction": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"score": {"type": "number"}, "label": _SCALAR,
                           "threshold": {"type": "number"}},
        },
        "timestamp": {"type": "string", "format": "date-time"},
        "action": {"type": "string"},
        "context": {"type": "object", "additionalProperties": _SCALAR},
    },
}

BATCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["records"],
    "additionalProperties": False,
    "properties": {"records": {"type": "array", "items": RECORD_SCHEMA}},
}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": schema}}}}


RECORD_OR_BATCH_BODY = _body({"oneOf": [RECORD_SCHEMA, BATCH_SCHEMA]})
COUNTERFACTUALS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": "Per-call counterfactual overrides (docs/counterfactuals.md)",
    "properties": {
        "target": {"type": "object", "additionalProperties": False,
                   "properties": {"label": _SCALAR, "min": {"type": "number"},
                                  "max": {"type": "number"}}},
        "immutable": {"type": "array", "items": {"type": "string"}},
        "mutable": {"type": "array", "items": {"type": "string"}},
        "ranges": {"type": "object", "additionalProperties": {
            "type": "object", "additionalProperties": False,
            "properties": {"min": {"type": "number"}, "max": {"type": "number"}}}},
        "categories": {"type": "object", "additionalProperties": {"type": "array",
                                                                 "items": _SCALAR}},
        "directions": {"type": "object", "additionalProperties": {
            "enum": ["any", "increase", "decrease"]}},
        "constraints": {"type": "array", "items": {"type": "string"},
                        "examples": [["debt <= credit_limit"]]},
        "weights": {"type": "object", "additionalProperties": {"type": "number"}},
        "max_changes": {"type": "integer", "minimum": 1},
    },
}

EXPLAIN_BODY = _body({
    "oneOf": [
        {"type": "object", "required": ["request_id"], "additionalProperties": False,
         "properties": {"request_id": {"type": "string"},
                        "counterfactuals": COUNTERFACTUALS_SCHEMA}},
        {**RECORD_SCHEMA, "properties": {**RECORD_SCHEMA["properties"],
                                         "counterfactuals": COUNTERFACTUALS_SCHEMA}},
    ]
})
