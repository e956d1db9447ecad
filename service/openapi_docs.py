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
EXPLAIN_BODY = _body({
    "oneOf": [
        {"type": "object", "required": ["request_id"], "additionalProperties": False,
         "properties": {"request_id": {"type": "string"}}},
        RECORD_SCHEMA,
    ]
})
