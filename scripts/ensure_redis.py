"""Make sure the Redis the tests need answers; start a throwaway one on loopback if not."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import redis


def answers(url: str) -> bool:
    """Tell whether Redis at `url` answers PING."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def main() -> int:
    """Ping, start if needed, wait up to 10 s."""
    url = sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/0"
    if answers(url):
        return 0
    server = shutil.which("redis-server")
    if server is None:
        sys.stderr.write("redis-server is not installed and no Redis answers at " + url + "\n")
        return 1
    subprocess.run(
        [server, "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379",
         "--save", "", "--appendonly", "no"],
        check=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if answers(url):
            return 0
        time.sleep(0.2)
    sys.stderr.write(f"started redis-server but {url} does not answer\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
