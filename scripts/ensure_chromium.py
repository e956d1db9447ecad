"""Make sure Debian's Chromium is installed for the browser tests (apt-get, never a download
by Playwright); CI runs as root, elsewhere sudo is tried."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")


def main() -> int:
    """Install the `chromium` package when /usr/bin/chromium is absent."""
    if CHROMIUM.exists():
        return 0
    apt = shutil.which("apt-get")
    if apt is None:
        sys.stderr.write(f"{CHROMIUM} is missing and apt-get is not available: install "
                         "Chromium so that it lives at that path\n")
        return 1
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    sys.stderr.write(f"{CHROMIUM} is missing: installing Debian's chromium package\n")
    for command in ([apt, "update", "-q"], [apt, "install", "-y", "-q", "chromium"]):
        if subprocess.run([*prefix, *command], env=env, check=False).returncode != 0:
            sys.stderr.write(f"failed: {' '.join(command)}\n")
            return 1
    return 0 if CHROMIUM.exists() else 1


if __name__ == "__main__":
    sys.exit(main())
