"""How every Redis-backed store reports a Redis that cannot answer."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from redis.exceptions import RedisError

from storage.errors import StoreUnavailable


@contextlib.contextmanager
def redis_errors(backend: str) -> Iterator[None]:
    """Turn Redis and socket errors into `StoreUnavailable` naming `backend`."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise StoreUnavailable(backend, f"{type(exc).__name__}: {exc}") from exc
