"""Put Prometheus' `promtool` into the virtualenv for the alerting-rules test.

Debian's `prometheus` package carries it; the package is downloaded and only `promtool`
is extracted (installing it would also set up a Prometheus server we do not want).
Usage: ensure_promtool.py VENV_BIN
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> int:
    """Copy promtool into VENV_BIN unless one is already there or on PATH."""
    target = Path(sys.argv[1]) / "promtool"
    if target.exists() or shutil.which("promtool"):
        return 0
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        sys.stderr.write("promtool is missing and apt-get/dpkg-deb are not available: "
                         f"install Prometheus' promtool on PATH or at {target}\n")
        return 1
    with tempfile.TemporaryDirectory() as scratch:
        where = Path(scratch)
        # As root, apt's unprivileged download user could not write into this folder.
        sandbox = ["-o", "APT::Sandbox::User=root"] if os.geteuid() == 0 else []
        download = subprocess.run(["apt-get", *sandbox, "download", "-q", "prometheus"],
                                  cwd=where, check=False)
        debs = sorted(where.glob("prometheus_*.deb"))
        if download.returncode != 0 or not debs:
            sys.stderr.write("failed: apt-get download prometheus (run apt-get update?)\n")
            return 1
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(where / "root")], check=True)
        shutil.copy2(where / "root" / "usr" / "bin" / "promtool", target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
