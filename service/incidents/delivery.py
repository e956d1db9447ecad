"""What an export target receives, and HTTP calls classified into retry or give up."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx

from service.errors import ExportRejected, ExportRetryable
from storage.incidents.records import StoredIncident

# A Retry-After beyond this is treated as this (an hour): the job is retried, not parked.
MAX_RETRY_AFTER_S = 3600.0
_RETRY_STATUSES = frozenset({408, 425, 429})

Checkpoint = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One export attempt: the incident, the bundle and the steps already done."""

    job_id: str
    incident: StoredIncident
    bundle: bytes
    digest: str
    file_name: str
    summary: dict[str, Any]
    state: dict[str, Any]


class ExportTarget(Protocol):
    """Delivers an incident bundle somewhere; safe to call again after any failure."""

    name: str

    async def deliver(self, delivery: Delivery, checkpoint: Checkpoint) -> dict[str, Any]:
        """Run the remaining steps, saving progress with `checkpoint`; return the end state.

        Raises:
            ExportRetryable: a timeout, 5xx, 429 or a not-yet-existing target record.
            ExportRejected: a failure retrying cannot fix.
        """
        ...


def retry_after_s(response: httpx.Response) -> float | None:
    """Seconds asked by a Retry-After header (delta-seconds or an HTTP date)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return min(max(0.0, (moment - datetime.now(UTC)).total_seconds()), MAX_RETRY_AFTER_S)


async def call(client: httpx.AsyncClient, target: str, method: str, url: str,
               **kwargs: Any) -> httpx.Response:
    """Send one request; return a 2xx response, else raise ExportRetryable/ExportRejected."""
    try:
        response = await client.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise ExportRetryable(target, f"{method} {_path(url)} timed out ({type(exc).__name__})"
                              ) from exc
    except httpx.TransportError as exc:
        raise ExportRetryable(target, f"{method} {_path(url)} failed: {type(exc).__name__}"
                              ) from exc
    if response.is_success:
        return response
    reason = f"{method} {_path(url)} answered {response.status_code}"
    if response.status_code >= 500 or response.status_code in _RETRY_STATUSES:
        raise ExportRetryable(target, reason, retry_after_s=retry_after_s(response))
    raise ExportRejected(target, f"{reason}: {_error_message(response)}")


def result_of(target: str, response: httpx.Response) -> Any:
    """The `result` of a `{"result": ...}` envelope; anything else is worth a retry."""
    try:
        return response.json()["result"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ExportRetryable(target, f"unexpected answer to {response.request.method} "
                                      f"{_path(str(response.request.url))}") from exc


def _error_message(response: httpx.Response) -> str:
    # ServiceNow errors are {"error": {"message", "detail"}, "status": "failure"}.
    try:
        error = response.json().get("error") or {}
        return str(error.get("message") or "")[:200]
    except (ValueError, AttributeError):
        return ""


def _path(url: str) -> str:
    # Only the path: query strings may carry identifiers nobody needs in an error.
    return httpx.URL(url).path
