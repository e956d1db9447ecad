"""Token buckets of explanations per model in Redis, shared by every replica."""

from __future__ import annotations

import redis.asyncio

from storage.redis_errors import redis_errors
from storage.traces.redis_keys import RedisKeys

BACKEND = "redis"

# Refill and take in one step, on the server's clock (replicas' clocks may disagree).
# Grants at most ARGV[1] whole tokens; the bucket expires once it would be full again
# anyway, so an idle model leaves no key behind. Numbers are stored with tostring, which
# keeps Lua's 14 significant digits.
TAKE_TOKENS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wanted = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local capacity = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ms')
local tokens = tonumber(state[1])
local stamp = tonumber(state[2])
if tokens == nil or stamp == nil then
  tokens = capacity
  stamp = now
elseif now > stamp then
  tokens = tokens + (now - stamp) * rate / 1000
  stamp = now
end
if tokens > capacity then tokens = capacity end
local granted = math.floor(tokens)
if granted > wanted then granted = wanted end
if granted < 0 then granted = 0 end
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ms', tostring(stamp))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 1000)
return granted
"""


class RedisExplanationBudget:
    """Per-model token buckets, one hash per model under the model's hash tag.

    Owns the client: `close()` closes it.
    """

    backend = BACKEND

    def __init__(self, client: redis.asyncio.Redis, *, key_prefix: str = "wl") -> None:
        self._client = client
        self._keys = RedisKeys(key_prefix)
        self._take = client.register_script(TAKE_TOKENS)

    async def take_tokens(self, model: str, count: int, *, rate: float,
                          capacity: float) -> int:
        """Take up to `count` tokens from the model's bucket; return how many were granted."""
        if count <= 0:
            return 0
        with redis_errors(BACKEND):
            granted = await self._take(keys=[self._keys.budget(model)],
                                       args=[count, repr(float(rate)), repr(float(capacity))])
        return int(granted)

    async def close(self) -> None:
        """Close the client."""
        with redis_errors(BACKEND):
            await self._client.aclose()
