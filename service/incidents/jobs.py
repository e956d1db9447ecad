"""Outbox jobs as the service sees them: detail JSON, views, retry delays."""

from __future__ import annotations

import random
import time
from dataclasses import replace
from typing import Any

import orjson

from service.settings import OutboxSettings
from service.trace_builder import iso_ms
from storage.incidents.records import StoredJob

EXPORT = "export"
BACKFILL = "backfill"


def now_ms() -> int:
    """Wall-clock time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def detail_of(job: StoredJob) -> dict[str, Any]:
    """The job's detail JSON as a dict."""
    detail: dict[str, Any] = orjson.loads(job.detail)
    return detail


def updated(job: StoredJob, detail: dict[str, Any], **changes: Any) -> StoredJob:
    """The job with a new detail and other fields changed, stamped now."""
    return replace(job, detail=orjson.dumps(detail), updated_ms=now_ms(), **changes)


def job_view(job: StoredJob) -> dict[str, Any]:
    """A job as served in an incident (never holds credentials or raw values)."""
    view: dict[str, Any] = {
        "id": job.job_id, "state": job.state, "attempts": job.attempts,
        "created_at": iso_ms(job.created_ms), "updated_at": iso_ms(job.updated_ms),
        "next_attempt_at": None if job.terminal else iso_ms(job.due_ms),
    }
    view.update(detail_of(job))
    return view


def retry_delay_s(attempts: int, settings: OutboxSettings,
                  retry_after_s: float | None = None) -> float:
    """Exponential backoff with jitter after `attempts` failures; Retry-After wins if longer."""
    backoff = min(settings.backoff_max_s, settings.backoff_s * float(2 ** max(0, attempts - 1)))
    # Jitter spreads replicas that failed together; never below half the backoff.
    delay = backoff * random.uniform(0.5, 1.0)
    return float(max(delay, retry_after_s or 0.0))
