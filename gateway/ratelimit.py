"""Per-client rate limits: a token bucket in Redis (one Lua call), or in memory when
embedded. Off unless ``MODELGATE_GATEWAY_RATE_LIMIT_RPS`` is set.

A client is its bearer token (only a hash prefix is kept) or, without one, its address.
When Redis fails, ``rate_limit_fail_open`` decides: serve (and report degraded) or answer
503. Redis computes the refill with its own clock, so every replica shares one bucket.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

from gateway.control.health import Health
from gateway.errors import LimiterUnavailable, RateLimited
from modelgate.core.keys import DEFAULT_KEYS, RedisKeys

__all__ = ["LUA_TOKEN_BUCKET", "RateLimiter", "client_key"]

LUA_TOKEN_BUCKET = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(tokens)}
"""


def client_key(headers: dict[str, str], client: tuple[str, int] | None) -> str:
    """``token:<sha256 prefix>`` for a bearer token, else ``addr:<ip>``."""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        return "token:" + hashlib.sha256(auth[7:].strip().encode()).hexdigest()[:16]
    return "addr:" + (client[0] if client else "unknown")


class RateLimiter:
    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        redis: Any | None,
        health: Health,
        fail_open: bool = True,
        clock: Callable[[], float] = time.monotonic,
        keys: RedisKeys = DEFAULT_KEYS,
    ) -> None:
        self.rate, self.burst = rate, max(burst, 1.0)
        self.redis = redis
        self.health = health
        self.fail_open = fail_open
        self.clock = clock
        self.keys = keys
        self._local: dict[str, tuple[float, float]] = {}
        self._script: Any = redis.register_script(LUA_TOKEN_BUCKET) if redis is not None else None

    async def check(self, client: str) -> None:
        """Take one token for ``client`` or raise `RateLimited` (429) / 503 (fail-closed)."""
        if self._script is None:
            allowed, tokens = self._take_local(client)
        else:
            try:
                result = await self._script(
                    keys=[self.keys.rate_limit(client)], args=[self.rate, self.burst]
                )
            except Exception as exc:
                self.health.fail("redis", f"rate limiter unavailable: {exc}")
                if self.fail_open:
                    return
                raise LimiterUnavailable("the rate limiter is unavailable; retry later") from None
            allowed, tokens = int(result[0]), float(result[1])
        if not allowed:
            raise RateLimited(client, (1.0 - tokens) / self.rate)

    def _take_local(self, client: str) -> tuple[int, float]:
        now = self.clock()
        tokens, ts = self._local.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - ts) * self.rate)
        if tokens >= 1:
            self._local[client] = (tokens - 1, now)
            return 1, tokens - 1
        self._local[client] = (tokens, now)
        return 0, tokens
