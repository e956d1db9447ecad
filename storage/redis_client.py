"""The one way to open an asyncio Redis client: timeouts, retries and C command packing."""

from __future__ import annotations

from typing import Any

import hiredis
import redis.asyncio
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

# A store that does not answer must fail the request quickly (503 and the spool take
# over), not hang the ingest path: short timeouts and two quick retries.
REDIS_CONNECT_TIMEOUT_S = 2.0
REDIS_SOCKET_TIMEOUT_S = 5.0
REDIS_RETRIES = 2
REDIS_HEALTH_CHECK_S = 30


class _HiredisPacking(AbstractConnection):
    """Packs commands with hiredis (C) instead of redis-py's asyncio Python packer.

    redis-py's synchronous client already does this when hiredis is installed; its
    asyncio client does not, and packing was a third of the loop's time on batch ingest
    (500 lookups and a script call per batch). Anything hiredis refuses (bool, None, a
    dict) or a command name holding spaces ("CONFIG GET") goes to redis-py's packer,
    which splits the name, or raises its usual DataError.
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        plain_name = (" " not in first if isinstance(first, str)
                      else b" " not in first if isinstance(first, bytes) else False)
        if not plain_name:
            return super().pack_command(*args)
        try:
            return [hiredis.pack_command(args)]
        except TypeError:
            return super().pack_command(*args)


class _PackedConnection(_HiredisPacking, Connection):
    pass


class _PackedSSLConnection(_HiredisPacking, SSLConnection):
    pass


class _PackedUnixConnection(_HiredisPacking, UnixDomainSocketConnection):
    pass


_PACKED: dict[type[AbstractConnection], type[AbstractConnection]] = {
    Connection: _PackedConnection, SSLConnection: _PackedSSLConnection,
    UnixDomainSocketConnection: _PackedUnixConnection,
}


def open_redis_client(url: str) -> redis.asyncio.Redis:
    """Return a bytes-returning client with the stores' timeouts; no I/O yet.

    The socket timeout must exceed any blocking read (`XREADGROUP BLOCK`) made with it.
    """
    client = redis.asyncio.Redis.from_url(
        url, decode_responses=False, socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
        socket_timeout=REDIS_SOCKET_TIMEOUT_S, health_check_interval=REDIS_HEALTH_CHECK_S,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), REDIS_RETRIES),
    )
    # The URL's scheme picked the connection class (TCP, TLS or Unix socket); the pool
    # makes its connections lazily, so swapping in the packing subclass here is in time.
    pool = client.connection_pool
    pool.connection_class = _PACKED.get(pool.connection_class, pool.connection_class)
    return client
