"""A lease in Redis: at most one holder at a time, lost on expiry, released only by its owner.

    SET {p}:lease:<name> <random token> NX PX <ttl>

Renewing and releasing compare the token first (one Lua script each), so a holder whose
lease expired and was taken over cannot extend or delete the new holder's lease.
"""

from __future__ import annotations

import secrets

import redis.asyncio

from storage.redis_errors import redis_errors

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisLease:
    """One named lease; `acquire`, `renew` while working, `release` when done."""

    def __init__(self, client: redis.asyncio.Redis, *, key_prefix: str, name: str,
                 ttl_ms: int) -> None:
        if ttl_ms <= 0:
            raise ValueError("ttl_ms must be positive")
        self._client = client
        self.key = f"{key_prefix}:lease:{name}"
        self._ttl_ms = ttl_ms
        self._token = secrets.token_hex(16)

    async def acquire(self) -> bool:
        """Take the lease if nobody holds it; True when taken."""
        with redis_errors("redis lease"):
            taken = await self._client.set(self.key, self._token, nx=True, px=self._ttl_ms)
        return bool(taken)

    async def renew(self) -> bool:
        """Extend the lease by its TTL; False when it is no longer ours."""
        with redis_errors("redis lease"):
            renewed = await self._client.eval(_RENEW, 1, self.key, self._token, self._ttl_ms)
        return bool(renewed)

    async def release(self) -> None:
        """Give the lease up (nothing happens when it is no longer ours)."""
        with redis_errors("redis lease"):
            await self._client.eval(_RELEASE, 1, self.key, self._token)
