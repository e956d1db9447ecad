"""Stopping background tasks for sure.

A cancellation can be lost inside a library call (turned into an error or a result that
the task's loop then shrugs off, seen with redis-py); the loop goes on and a shutdown that
awaits it waits forever. So cancellation is repeated until each task has ended, and a
task that still refuses is reported and left behind instead of hanging the process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

logger = logging.getLogger(__name__)

STOP_TIMEOUT_S = 10.0
RECANCEL_EVERY_S = 0.5


async def stop_tasks(tasks: Iterable[asyncio.Task[Any]], *,
                     timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Cancel the tasks and wait until they end, cancelling again while any runs on."""
    tasks = list(tasks)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - loop.time()
        if left <= 0:
            logger.error("background tasks did not stop within %.0f s, left running: %s",
                         timeout_s, ", ".join(sorted(task.get_name() for task in pending)))
            break
        _done, pending = await asyncio.wait(pending, timeout=min(RECANCEL_EVERY_S, left))
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            logger.error("background task %s had failed", task.get_name(),
                         exc_info=task.exception())
