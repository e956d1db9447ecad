"""stop_tasks: a lost cancellation does not hang a shutdown."""

from __future__ import annotations

import asyncio
import logging

import pytest

from service.task_control import stop_tasks


async def _swallows_cancellations(times: int, lost: list[int],
                                  done: asyncio.Event | None = None) -> None:
    """A periodic loop whose step loses a cancellation, as a library call can."""
    while done is None or not done.is_set():
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            if len(lost) == times:
                raise
            lost.append(1)


async def test_a_task_that_lost_a_cancellation_is_cancelled_again_until_it_ends() -> None:
    lost: list[int] = []
    task = asyncio.create_task(_swallows_cancellations(2, lost), name="lossy")
    await asyncio.sleep(0.05)
    await stop_tasks([task], timeout_s=5)
    assert task.cancelled()
    # Two cancellations were lost on the way: a plain cancel-and-await would hang.
    assert len(lost) == 2


async def test_a_task_that_never_stops_is_reported_and_left_behind(
        caplog: pytest.LogCaptureFixture) -> None:
    done = asyncio.Event()
    task = asyncio.create_task(_swallows_cancellations(10**9, [], done), name="stubborn")
    await asyncio.sleep(0.02)
    try:
        with caplog.at_level(logging.ERROR, logger="service.task_control"):
            await asyncio.wait_for(stop_tasks([task], timeout_s=0.3), timeout=5)
        assert not task.done()
        assert "stubborn" in caplog.text
    finally:
        done.set()  # the only way this task ends
        await task


async def test_a_failed_task_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(fails(), name="failing")
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="service.task_control"):
        await stop_tasks([task])
    assert "failing" in caplog.text
