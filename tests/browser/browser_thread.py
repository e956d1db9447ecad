"""Headless Chromium through Playwright's async API, on an event loop of its own thread.

The tests never share a loop with pytest-asyncio: Playwright's loop lives in a daemon
thread, and the (sync) tests hand it one coroutine at a time through
`run_coroutine_threadsafe`, waiting a bounded time for each. A stuck browser therefore
fails a test with a timeout instead of hanging the run, and the shutdown of this thread
cannot block the interpreter's exit (the Playwright driver exits with its parent's pipe,
taking Chromium with it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from playwright.async_api import Browser, Page, Playwright, async_playwright

logger = logging.getLogger(__name__)

T = TypeVar("T")

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
# Generous bounds: they only decide how long a genuinely stuck browser takes to fail, and
# a loaded CI machine (load 10+ on two cores) is many times slower than an idle one.
LAUNCH_TIMEOUT_MS = 90_000
ACTION_TIMEOUT_MS = 30_000
NAVIGATION_TIMEOUT_MS = 60_000
CHECK_TIMEOUT_S = 180.0
CLOSE_TIMEOUT_S = 30.0


@dataclass
class ConsoleLog:
    """Console errors and uncaught page errors seen by one page."""

    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Tab:
    """A fresh page at 1280 × 900 in its own browser context, and what it logged."""

    page: Page
    log: ConsoleLog


Check = Callable[[Tab], Awaitable[T]]


class LoopThread:
    """An event loop running in a daemon thread; callers wait a bounded time for each call."""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name,
                                        daemon=True)
        self._thread.start()

    def call(self, coroutine: Coroutine[Any, Any, T], *, timeout_s: float, what: str) -> T:
        """Run `coroutine` on the loop; its exceptions propagate, a timeout cancels it."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout=timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"{what} took more than {timeout_s:.0f} s") from None

    def close(self) -> None:
        """Stop the loop; a loop stuck in a callback is left to die with the process."""
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=CLOSE_TIMEOUT_S)
        if not self._thread.is_alive():
            self._loop.close()


class BrowserThread:
    """One Chromium for many checks; every call into it waits a bounded time."""

    def __init__(self, executable: Path) -> None:
        self._executable = executable
        self._loop = LoopThread("playwright-loop")
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None

    def start(self) -> None:
        """Start the Playwright driver and Chromium."""
        self._loop.call(self._launch(), timeout_s=LAUNCH_TIMEOUT_MS / 1000 + 30,
                        what="launching Chromium")

    def check(self, check: Check[T], *, timeout_s: float = CHECK_TIMEOUT_S) -> T:
        """Run `check` on a fresh tab; its assertion errors propagate to the test."""
        return self._loop.call(self._in_tab(check), timeout_s=timeout_s, what="browser check")

    def close(self) -> None:
        """Close Chromium and the driver, then stop the loop; bounded at every step."""
        try:
            self._loop.call(self._shutdown(), timeout_s=2 * CLOSE_TIMEOUT_S + 5,
                            what="closing Chromium")
        except (TimeoutError, RuntimeError, OSError) as exc:
            # A browser that will not close must not fail or block the run; the driver
            # exits when this process does.
            logger.warning("closing Chromium failed: %r", exc)
        finally:
            self._loop.close()

    async def _launch(self) -> None:
        self._playwright = await async_playwright().start()
        self._browser = await self._playwright.chromium.launch(
            executable_path=str(self._executable), args=CHROMIUM_ARGS,
            timeout=LAUNCH_TIMEOUT_MS)

    async def _in_tab(self, check: Check[T]) -> T:
        if self._browser is None:
            raise RuntimeError("the browser is not running")
        context = await self._browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        context.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
        try:
            page = await context.new_page()
            log = ConsoleLog()
            page.on("console",
                    lambda m: log.errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: log.errors.append(str(e)))
            return await check(Tab(page, log))
        finally:
            await asyncio.wait_for(context.close(), timeout=CLOSE_TIMEOUT_S)

    async def _shutdown(self) -> None:
        if self._browser is not None:
            await asyncio.wait_for(self._browser.close(), timeout=CLOSE_TIMEOUT_S)
        if self._playwright is not None:
            await asyncio.wait_for(self._playwright.stop(), timeout=CLOSE_TIMEOUT_S)
