"""Audited access: unmasking a trace with its sealed raw inputs, and admin calls.

Every unmask is appended to the audit log *before* the raw values leave the service;
if the log cannot be written, the caller gets a 503 and no raw value. Admin calls are
appended once their answer is known (the middleware sees the status), refused ones too.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.auth import Caller
from service.errors import InputsExpired
from service.runtime import Runtime
from service.validation import REQUEST_ID
from storage.audit.records import AuditEvent
from storage.errors import StorageError
from storage.records import StoredTrace

logger = logging.getLogger(__name__)

UNMASK = "trace.unmask"
ADMIN = "admin"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def unmask_trace(runtime: Runtime, caller: Caller, stored: StoredTrace,
                       body: bytes) -> bytes:
    """Return the trace with masked feature values restored, after logging the read.

    Raises `InputsExpired` (logged as an attempt) when the record or its sealed inputs
    are past retention.
    """
    target = f"GET /v1/traces/{stored.request_id}?unmask=true"
    record = await runtime.records.get_record(stored.request_id)
    if record is None or not record.sealed_inputs:
        await _append(runtime, caller, target, stored.request_id, 410, {})
        raise InputsExpired(stored.request_id)
    ready = await runtime.loader.get(stored.model, stored.version)
    raw = orjson.loads(runtime.sealer.open(record.sealed_inputs,
                                           request_id=stored.request_id))
    names = sorted(name for name in ready.masker.masked_features if name in raw)
    document = orjson.loads(body)
    _restore(document, {name: raw[name] for name in names})
    entry_id = await _append(runtime, caller, target, stored.request_id, 200,
                             {"features": ",".join(names)})
    document["unmasked"] = {"features": names, "audit_id": entry_id}
    return orjson.dumps(document)


def _restore(document: dict[str, Any], raw: dict[str, Any]) -> None:
    features = document.get("features")
    if isinstance(features, dict):
        features.update({k: v for k, v in raw.items() if k in features})
    explanation = document.get("explanation")
    if isinstance(explanation, dict):
        for item in explanation.get("top") or ():
            if isinstance(item, dict) and item.get("feature") in raw:
                item["value"] = raw[item["feature"]]
    for counterfactual in document.get("counterfactuals") or ():
        changes = counterfactual.get("changes") if isinstance(counterfactual, dict) else None
        for name, change in (changes or {}).items():
            if name in raw and isinstance(change, dict) and "from" in change:
                change["from"] = raw[name]


async def _append(runtime: Runtime, caller: Caller, target: str, request_id: str | None,
                  status: int, detail: dict[str, str]) -> str:
    event = AuditEvent(at_ms=_now_ms(), actor=caller.name, action=UNMASK, target=target,
                       request_id=request_id, status=status, detail=detail)
    entry_id = await runtime.audit.append(event)
    runtime.metrics.audit_events.labels(UNMASK).inc()
    if status == 200:
        runtime.metrics.unmask_reads.inc()
    return entry_id


class AuditMiddleware:
    """Appends one audit entry per call of an admin endpoint (marked by `deps.require`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        status = 500

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            if state.get("whylens_audit") == ADMIN:
                await self._record(scope, state, status)

    async def _record(self, scope: Scope, state: dict[str, Any], status: int) -> None:
        runtime: Runtime | None = getattr(scope["app"].state, "runtime", None)
        if runtime is None:
            return
        headers = dict(scope.get("headers") or ())
        header_id = headers.get(b"x-request-id", b"").decode("latin-1")
        query = scope.get("query_string", b"").decode("latin-1")
        target = f"{scope['method']} {scope['path']}" + (f"?{query[:256]}" if query else "")
        event = AuditEvent(
            at_ms=_now_ms(), actor=str(state.get("whylens_caller", "?")), action=ADMIN,
            target=target, request_id=header_id if REQUEST_ID.match(header_id) else None,
            status=status)
        try:
            await runtime.audit.append(event)
            runtime.metrics.audit_events.labels(ADMIN).inc()
        except StorageError:
            # The action already happened; the failure must be loud and counted.
            runtime.metrics.audit_failures.inc()
            logger.exception("cannot append the audit entry of %s by %s", target, event.actor)
