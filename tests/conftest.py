"""Session fixtures for the real servers the integration tests talk to.

`make test` exports WHYLENS_TEST_REDIS_URL and, when it runs one, WHYLENS_TEST_S3_ENDPOINT.
Without an S3 endpoint the suite starts moto's server mode on a free loopback port: a
real HTTP server, reached through the same boto3 code as production. A Redis that does
not answer is an error, never a skip.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the real Redis; the session fails if it does not answer."""
    import redis

    url = os.environ.get("WHYLENS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {url} is not answering ({exc}); run `make test`", pytrace=False)
    finally:
        client.close()
    return url


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """Endpoint URL of an S3-compatible server over HTTP on loopback."""
    configured = os.environ.get("WHYLENS_TEST_S3_ENDPOINT")
    if configured:
        yield configured
        return
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session", autouse=True)
def _fake_aws_credentials() -> Iterator[None]:
    """Give boto3 credentials that only the local S3 server will see."""
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                            "AWS_DEFAULT_REGION")}
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "whylens-test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "whylens-test")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session", autouse=True)
def _no_heap_freezing() -> Iterator[None]:
    """Load models without freezing the heap (service/heap.py), unless a test asks.

    The suite starts hundreds of apps; a collection before each freeze cost a third of
    the API tests' time. Freezing changes when the GC runs, never what the service does;
    tests/api/test_heap_freeze.py turns it on and checks it.
    """
    saved = os.environ.get("WHYLENS_FREEZE_LOADED_MODELS")
    os.environ.setdefault("WHYLENS_FREEZE_LOADED_MODELS", "false")
    yield
    if saved is None:
        os.environ.pop("WHYLENS_FREEZE_LOADED_MODELS", None)


@pytest.fixture
def unique_prefix() -> str:
    """A key prefix no other test (or earlier run) uses, for the shared Redis."""
    return f"wltest-{uuid.uuid4().hex[:12]}"
