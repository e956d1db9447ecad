"""Generic webhook export: a JSON POST whose raw body is signed with HMAC-SHA256.

Headers: `X-Whylens-Signature: sha256=<hex>` (name configurable), `X-Whylens-Delivery`
(stable across retries: receivers drop repeats by it) and `X-Whylens-Event`.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import httpx
import orjson

from service.incidents.delivery import Checkpoint, Delivery, call
from service.incidents.jobs import now_ms
from service.settings import WebhookSettings
from service.trace_builder import iso_ms

NAME = "webhook"
EVENT = "incident.export"


def signature(secret: bytes, body: bytes) -> str:
    """The signature header value of a body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def webhook_body(delivery: Delivery) -> bytes:
    """The JSON posted: incident, summary and the bundle's identity (not its traces)."""
    incident = delivery.incident
    return orjson.dumps({
        "event": EVENT, "delivery": delivery.job_id,
        "incident": {"id": incident.incident_id, "model": incident.model,
                     "title": incident.title, "severity": incident.severity,
                     "state": incident.state},
        "summary": delivery.summary,
        "bundle": {"sha256": delivery.digest, "file_name": delivery.file_name,
                   "bytes": len(delivery.bundle)},
        "links": {"incident": f"/v1/incidents/{incident.incident_id}",
                  "traces": f"/v1/traces?incident={incident.incident_id}"},
    }, option=orjson.OPT_SORT_KEYS)


class WebhookTarget:
    """Posts signed JSON to one URL."""

    name = NAME

    def __init__(self, client: httpx.AsyncClient, settings: WebhookSettings) -> None:
        if settings.url is None or settings.secret is None:
            raise ValueError("webhook.url and webhook.secret must both be set")
        self._client = client
        self._url = settings.url
        self._secret = settings.secret.get_secret_value().encode()
        self._header = settings.signature_header

    async def deliver(self, delivery: Delivery, checkpoint: Checkpoint) -> dict[str, Any]:
        """POST once; a retry sends the same body and delivery ID."""
        body = webhook_body(delivery)
        await call(self._client, NAME, "POST", self._url, content=body, headers={
            "Content-Type": "application/json", self._header: signature(self._secret, body),
            "X-Whylens-Delivery": delivery.job_id, "X-Whylens-Event": EVENT})
        state = {**delivery.state, "delivered_at": iso_ms(now_ms())}
        await checkpoint(state)
        return state
