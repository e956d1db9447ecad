"""The incident and sampling tasks of one replica, started and stopped by the lifespan."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import httpx

from service.errors import ServiceError
from service.incidents.export import export_targets
from service.incidents.outbox import OutboxWorker
from service.runtime import Runtime
from service.task_control import stop_tasks
from storage.errors import StorageError

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class IncidentTasks:
    """Running tasks and the HTTP client of the export targets."""

    client: httpx.AsyncClient
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


async def refresh_sampling(runtime: Runtime) -> None:
    """Re-read published policies and the open incidents (incident mode)."""
    try:
        models = await runtime.loader.catalog.list_models()
        await runtime.policy.refresh_all(models)
        runtime.policy.set_open_incidents(
            await runtime.incidents.store.list_incidents(open_only=True, limit=10_000))
    except (StorageError, ServiceError) as exc:
        logger.error("refreshing sampling policies and incident mode failed: %s", exc)


async def _refresh_forever(runtime: Runtime) -> None:
    while True:
        await asyncio.sleep(runtime.settings.sampling.policy_refresh_s)
        await refresh_sampling(runtime)


async def start_incident_tasks(runtime: Runtime) -> IncidentTasks:
    """Load policies and incident mode before serving, then start refresher and outbox."""
    await refresh_sampling(runtime)
    client = httpx.AsyncClient(timeout=runtime.settings.outbox.timeout_s)
    worker = OutboxWorker(runtime, export_targets(runtime.settings, client))
    running = IncidentTasks(client)
    running.tasks.append(asyncio.create_task(_refresh_forever(runtime),
                                              name="whylens-policy-refresh"))
    running.tasks.append(asyncio.create_task(worker.run(), name="whylens-outbox"))
    return running


async def stop_incident_tasks(running: IncidentTasks) -> None:
    """Cancel the tasks and close their HTTP client (the store closes with the runtime)."""
    await stop_tasks(running.tasks)
    await running.client.aclose()
