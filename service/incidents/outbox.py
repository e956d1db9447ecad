"""The outbox worker of one replica: claims due jobs (exports, backfills) and runs them.

Jobs live in the incident store, so nothing is lost on restart: a job claimed by a
replica that dies is claimed again when its lease ends. Exports retry timeouts, 5xx
and 429 (honouring Retry-After) with exponential backoff, up to `outbox.max_attempts`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import orjson

from service.errors import ExportRejected, ExportRetryable
from service.incidents.backfill import run_backfill_step
from service.incidents.delivery import Delivery, ExportTarget
from service.incidents.jobs import BACKFILL, EXPORT, detail_of, now_ms, retry_delay_s, updated
from service.runtime import Runtime
from storage.errors import StorageError
from storage.incidents.records import (
    JOB_DONE,
    JOB_FAILED,
    JOB_RETRYING,
    JOB_RUNNING,
    StoredJob,
)

logger = logging.getLogger(__name__)

CLAIM_LIMIT = 4


class OutboxWorker:
    """Runs outbox jobs until cancelled."""

    def __init__(self, runtime: Runtime, targets: Mapping[str, ExportTarget]) -> None:
        self._runtime = runtime
        self._targets = dict(targets)

    async def run(self) -> None:
        """Claim and run due jobs; sleep until woken or the poll interval passes."""
        wake = self._runtime.incidents.wake
        poll_s = self._runtime.settings.outbox.poll_s
        while True:
            wake.clear()
            try:
                busy = await self.run_once()
            except StorageError as exc:
                logger.error("outbox: cannot claim jobs: %s", exc)
                busy = False
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=poll_s)

    async def run_once(self) -> bool:
        """Run the jobs due now; tell whether there were any."""
        settings = self._runtime.settings.outbox
        jobs = await self._runtime.incidents.store.claim_jobs(
            now_ms=now_ms(), lease_ms=int(settings.lease_s * 1000), limit=CLAIM_LIMIT)
        for job in jobs:
            await self._run_job(job)
        return bool(jobs)

    async def _run_job(self, job: StoredJob) -> None:
        try:
            if job.kind == EXPORT:
                await self._export(job)
            elif job.kind == BACKFILL:
                await run_backfill_step(self._runtime, job)
            else:
                await self._finish(job, JOB_FAILED, f"unknown job kind {job.kind!r}")
        except StorageError as exc:
            # The lease hands the job to the next claim; nothing to record now.
            logger.error("outbox: job %s interrupted by the store: %s", job.job_id, exc)
        except Exception as exc:  # the worker loop must survive any one job
            self._runtime.incidents.metrics.worker_errors.labels(job.kind).inc()
            logger.exception("outbox: job %s failed unexpectedly", job.job_id)
            await self._retry(job, job.attempts + 1, f"internal error: {type(exc).__name__}",
                              None)

    async def _export(self, job: StoredJob) -> None:
        detail = detail_of(job)
        target_name = str(detail.get("target"))
        target = self._targets.get(target_name)
        if target is None:
            await self._finish(job, JOB_FAILED, f"target {target_name!r} is not configured")
            return
        store = self._runtime.incidents.store
        bundle = await store.job_payload(job.job_id)
        incident = await store.get_incident(job.incident_id)
        if bundle is None or incident is None:
            await self._finish(job, JOB_FAILED, "the bundle or the incident is gone")
            return
        attempts = job.attempts + 1
        lease_ms = int(self._runtime.settings.outbox.lease_s * 1000)
        current = updated(job, detail, state=JOB_RUNNING, attempts=attempts,
                          due_ms=now_ms() + lease_ms)

        async def checkpoint(steps: dict[str, Any]) -> None:
            nonlocal current
            detail["steps"] = steps
            current = updated(current, detail, due_ms=now_ms() + lease_ms)
            await store.save_job(current)

        document = orjson.loads(bundle)
        delivery = Delivery(job_id=job.job_id, incident=incident, bundle=bundle,
                            digest=str(detail["digest"]), file_name=str(detail["file_name"]),
                            summary=document.get("summary") or {},
                            state=dict(detail.get("steps") or {}))
        metrics = self._runtime.incidents.metrics.exports
        try:
            await target.deliver(delivery, checkpoint)
        except ExportRetryable as exc:
            metrics.labels(target_name, "retry").inc()
            await self._retry(current, attempts, exc.reason, exc.retry_after_s)
            return
        except ExportRejected as exc:
            metrics.labels(target_name, "failed").inc()
            await self._finish(current, JOB_FAILED, exc.reason)
            return
        metrics.labels(target_name, "done").inc()
        await self._finish(current, JOB_DONE, None)

    async def _retry(self, job: StoredJob, attempts: int, reason: str,
                     retry_after_s: float | None) -> None:
        settings = self._runtime.settings.outbox
        detail = detail_of(job)
        detail["last_error"] = reason
        if attempts >= settings.max_attempts:
            logger.error("outbox: job %s gave up after %d attempts: %s", job.job_id, attempts,
                         reason)
            await self._runtime.incidents.store.save_job(
                updated(job, detail, state=JOB_FAILED, attempts=attempts))
            return
        delay_s = retry_delay_s(attempts, settings, retry_after_s)
        detail["retry_after_s"] = retry_after_s
        logger.warning("outbox: job %s attempt %d failed (%s); retrying in %.1f s",
                       job.job_id, attempts, reason, delay_s)
        await self._runtime.incidents.store.save_job(updated(
            job, detail, state=JOB_RETRYING, attempts=attempts,
            due_ms=now_ms() + int(delay_s * 1000)))

    async def _finish(self, job: StoredJob, state: str, error: str | None) -> None:
        detail = detail_of(job)
        if error is not None:
            detail["last_error"] = error
            logger.error("outbox: job %s failed: %s", job.job_id, error)
        else:
            detail["last_error"] = None
        await self._runtime.incidents.store.save_job(updated(job, detail, state=state))
