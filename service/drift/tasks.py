"""Background tasks of the drift windows, started and stopped by the app's lifespan."""

from __future__ import annotations

import asyncio
import logging

from service.drift.gauges import refresh_periodically
from service.runtime import Runtime
from service.task_control import stop_tasks
from storage.errors import StorageError
from storage.protocols import ExpiringStore

logger = logging.getLogger(__name__)


async def _purge_periodically(store: ExpiringStore, interval_s: int) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            purged = await store.purge_expired()
            logger.info("purged %d expired drift counters", purged)
        except StorageError:
            logger.exception("purging expired drift counters failed")


def start_drift_tasks(runtime: Runtime) -> list[asyncio.Task[None]]:
    """Start the gauge refresher and, for an embedded store, the purger."""
    tasks = [asyncio.create_task(refresh_periodically(runtime), name="whylens-drift-gauges")]
    store = runtime.drift.store
    if isinstance(store, ExpiringStore):
        tasks.append(asyncio.create_task(
            _purge_periodically(store, runtime.settings.retention.purge_interval_s),
            name="whylens-drift-purge"))
    return tasks


async def stop_drift_tasks(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the tasks and wait for them to end."""
    await stop_tasks(tasks)
