"""`whylens serve` in a child process on a free loopback port, started and stopped in bounded time.

A child process rather than a thread of the test process: the service's event loop,
background tasks and CPU work never meet pytest-asyncio's loop or the test's GIL, and a
service that will not stop is killed instead of joined forever.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from tests.integration.scale_out_support import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
# Start-up imports the stack and may compile the numba kernels (cached afterwards): tens
# of seconds on a loaded two-core machine. The bound only matters for a service that
# never comes up, and the child's exit is noticed at once.
READY_TIMEOUT_S = 240.0
PORT_ATTEMPTS = 3


class ServiceFailed(RuntimeError):
    """The child service exited or did not become ready; carries the tail of its log."""


def _log_tail(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace")[-3000:] if log.exists() else ""


def _wait_ready(process: subprocess.Popen[bytes], base_url: str, log: Path) -> bool:
    """True once /readyz answers 200; False if the child exited (e.g. the port was taken)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            if httpx.get(base_url + "/readyz", timeout=5).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_process(process)
    raise ServiceFailed(f"the service was not ready after {READY_TIMEOUT_S:.0f} s:\n"
                        f"{_log_tail(log)}")


class ServiceProcess:
    """The running child service; `stop()` ends it within about 25 s in every case."""

    def __init__(self, env: Mapping[str, str], *, workdir: Path) -> None:
        # The caller's WHYLENS_* (e.g. WHYLENS_TEST_REDIS_URL) must not reach the service.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("WHYLENS_")}
        python_path = os.pathsep.join(p for p in (str(ROOT), inherited.get("PYTHONPATH")) if p)
        self._env = {**inherited, "PYTHONPATH": python_path, **env}
        self._workdir = workdir
        self.log = workdir / "service.log"
        self._process: subprocess.Popen[bytes] | None = None
        self.base_url = ""

    def start(self) -> str:
        """Serve on a free port (another on a lost race for it); return the base URL."""
        for _ in range(PORT_ATTEMPTS):
            port = free_port()
            with open(self.log, "ab") as handle:
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1",
                     "--port", str(port)],
                    env=self._env, cwd=self._workdir, stdout=handle, stderr=handle,
                    stdin=subprocess.DEVNULL)
            self.base_url = f"http://127.0.0.1:{port}"
            if _wait_ready(self._process, self.base_url, self.log):
                return self.base_url
        raise ServiceFailed(f"the service exited at start-up {PORT_ATTEMPTS} times:\n"
                            f"{_log_tail(self.log)}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s."""
        if self._process is not None:
            stop_process(self._process)
