"""Trace bodies as served: the stored incident links spliced in, and list entries."""

from __future__ import annotations

from typing import Any

import orjson

from storage.records import StoredTrace


def trace_body(stored: StoredTrace) -> bytes:
    """The trace JSON with `incidents` from the store (links made after the trace was built)."""
    if not stored.incidents:
        return stored.body
    document = orjson.loads(stored.body)
    if document.get("incidents") == list(stored.incidents):
        return stored.body
    document["incidents"] = list(stored.incidents)
    return orjson.dumps(document)


def trace_entry(document: dict[str, Any]) -> dict[str, Any]:
    """The short form of a trace in an incident's `traces` list (masked values only)."""
    prediction = document.get("prediction") or {}
    recomputed = prediction.get("recomputed") or {}
    explanation = document.get("explanation") or {}
    request_id = document.get("request_id")
    return {
        "request_id": request_id,
        "version": (document.get("model") or {}).get("version"),
        "timestamp": document.get("timestamp"),
        "reason": (document.get("sampling") or {}).get("reason"),
        "cohort": (document.get("context") or {}).get("cohort"),
        "action": document.get("action"),
        "score": recomputed.get("score"),
        "label": recomputed.get("label"),
        "mismatch": prediction.get("mismatch"),
        "top": explanation.get("top", []),
        "trace_url": f"/v1/traces/{request_id}",
    }
