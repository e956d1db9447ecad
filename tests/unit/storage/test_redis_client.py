from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import DataError

from storage.redis_client import open_redis_client

# Commands as the stores send them: str and bytes names, int TTLs, float scores, UTF-8
# text, large values (past redis-py's buffer cutoff), and redis-py's multi-word names.
COMMANDS: list[tuple[Any, ...]] = [
    ("SET", "wl:lookup:é-1", b"credit", "NX", "GET", "EX", 86_400),
    (b"EVALSHA", b"0" * 40, 2, "k1", "k2", b"\x00\xff" * 4096, 3_600, -1),
    ("ZADD", "wl:index", 1_700_000_000_123.5, "rid", 0.1, 1 / 3, 1e20),
    ("INCRBY", "n", 2**62),
    ("CONFIG GET", "maxmemory"),
    (b"CLIENT SETNAME", b"whylens"),
]


@pytest.mark.parametrize(("url", "base"), [
    ("redis://127.0.0.1:6379/0", Connection),
    ("rediss://cache.internal:6380/2", SSLConnection),
    ("unix:///run/redis.sock", UnixDomainSocketConnection),
])
async def test_every_scheme_keeps_its_connection_kind(url: str, base: type) -> None:
    client = open_redis_client(url)
    cls = client.connection_pool.connection_class
    assert issubclass(cls, base) and cls is not base
    await client.aclose()


@pytest.mark.parametrize("command", COMMANDS)
async def test_packing_matches_redis_py_byte_for_byte(command: tuple[Any, ...]) -> None:
    client = open_redis_client("redis://127.0.0.1:6379/0")
    ours = client.connection_pool.make_connection()
    theirs = Connection()
    assert b"".join(ours.pack_command(*command)) == b"".join(theirs.pack_command(*command))
    batch = COMMANDS[:3]
    assert b"".join(ours.pack_commands(batch)) == b"".join(theirs.pack_commands(batch))
    await client.aclose()


@pytest.mark.parametrize("value", [True, None, {"a": 1}])
async def test_values_redis_py_refuses_are_still_refused(value: object) -> None:
    client = open_redis_client("redis://127.0.0.1:6379/0")
    connection = client.connection_pool.make_connection()
    with pytest.raises(DataError):
        connection.pack_command("SET", "k", value)
    await client.aclose()


async def test_memoryview_values_are_packed_like_bytes() -> None:
    client = open_redis_client("redis://127.0.0.1:6379/0")
    connection = client.connection_pool.make_connection()
    packed = b"".join(connection.pack_command("SET", "k", memoryview(b"abc")))
    assert packed == b"".join(Connection().pack_command("SET", "k", b"abc"))
    await client.aclose()
