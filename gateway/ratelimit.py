"""Per-client rate limits: a token bucket in Redis (one Lua call), or in memory when
embedded.

A client is who `gateway.identity.Identity` says it is: a verified token (its own
``rate_limit_rps``/``rate_limit_burst``, else the gateway's default) or, without one, its
address. The gateway's default is off unless ``MODELGATE_GATEWAY_RATE_LIMIT_RPS`` is set; a
token's limit applies either way. Redis calls go through `gateway.breaker.RedisBreaker`: when
Redis fails or is skipped, ``rate_limit_fail_open`` decides: serve (reported degraded) or
answer 503, at once. Redis computes the refill with its own clock, so every replica shares
one bucket.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.breaker import RedisBreaker, RedisSkipped
from gateway.errors import LimiterUnavailable, RateLimited
from gateway.identity import Caller
from modelgate.core.keys import DEFAULT_KEYS, RedisKeys

__all__ = ["LUA_TOKEN_BUCKET", "RateLimiter"]

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


class RateLimiter:
    """Token buckets per `Caller`; ``rate``/``burst`` are the default for callers whose
    token sets no limit of its own (``rate`` 0: those callers are not limited)."""

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        breaker: RedisBreaker | None,
        fail_open: bool = True,
        clock: Callable[[], float] = time.monotonic,
        keys: RedisKeys = DEFAULT_KEYS,
        local_limit: int = 65_536,
    ) -> None:
        self.rate, self.burst = rate, burst or rate
        self.breaker = breaker
        self.fail_open = fail_open
        self.clock = clock
        self.keys = keys
        #: In-memory buckets (embedded mode): (tokens, updated, when full again), at most
        #: ``local_limit`` of them.
        self._local: dict[str, tuple[float, float, float]] = {}
        self.local_limit = local_limit
        self._script = breaker.redis.register_script(LUA_TOKEN_BUCKET) if breaker else None

    def limits(self, caller: Caller) -> tuple[float, float]:
        """(requests/s, burst) for ``caller``: what its token sets, the default for the
        rest; a token's burst defaults to its own rate when it sets one."""
        grant = caller.grant
        if grant is None:
            return self.rate, max(self.burst, 1.0)
        rps, burst = grant.rate_limit_rps, grant.rate_limit_burst
        rate = self.rate if rps is None else rps
        if burst is None:
            burst = self.burst if rps is None else rps
        return rate, max(burst, 1.0)

    async def check(self, caller: Caller) -> None:
        """Take one token for ``caller`` or raise `RateLimited` (429) / `LimiterUnavailable`
        (503, when Redis is failing and limits fail closed)."""
        rate, burst = self.limits(caller)
        if rate <= 0:
            return
        if self._script is None or self.breaker is None:
            allowed, tokens = self._take_local(caller.key, rate, burst)
        else:
            script, key = self._script, self.keys.rate_limit(caller.key)
            try:
                result = await self.breaker.call(lambda: script(keys=[key], args=[rate, burst]))
            except RedisSkipped:
                if self.fail_open:
                    return
                raise LimiterUnavailable(
                    "the rate limiter's Redis is unavailable and limits fail closed; retry later"
                ) from None
            allowed, tokens = int(result[0]), float(result[1])
        if not allowed:
            raise RateLimited(caller.label, (1.0 - tokens) / rate)

    def _take_local(self, client: str, rate: float, burst: float) -> tuple[int, float]:
        now = self.clock()
        entry = self._local.get(client)
        if entry is None:
            if len(self._local) >= self.local_limit:
                self._forget(now)
            tokens = burst
        else:
            tokens = min(burst, entry[0] + (now - entry[1]) * rate)
        allowed = tokens >= 1
        if allowed:
            tokens -= 1
        self._local[client] = (tokens, now, now + (burst - tokens) / rate)
        return int(allowed), tokens

    def _forget(self, now: float) -> None:
        """Make room: forget buckets that are full again (a new one is the same); when too
        few are, the oldest half too, so many addresses cannot grow memory without bound."""
        for key in [k for k, (_, _, full_at) in self._local.items() if full_at <= now]:
            del self._local[key]
        if len(self._local) >= self.local_limit:
            for key in list(self._local)[: len(self._local) // 2 + 1]:
                del self._local[key]
