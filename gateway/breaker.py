"""A circuit breaker for Redis on the request path.

Every request-path Redis call goes through `RedisBreaker.call`, bounded by
``redis_timeout_s``. The first call that fails or runs out of time opens the breaker:
from then on `call` raises `RedisSkipped` at once, without touching Redis, so a hung
server (SIGSTOP, a partition that drops packets) costs one timeout, not one per request.
The breaker never closes because a request tried its luck: a background loop PINGs every
``probe_interval_s`` and closes it when Redis answers in time. The same loop opens it when a
PING fails while it is closed, so readiness reports Redis degraded without traffic.

State is reported as the ``redis`` source of `gateway.control.health.Health`. Other loops
report on that source too; one that reaches Redis may clear it up to one probe interval
before the breaker's own PING closes the breaker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from gateway.control.background import Tasks
from gateway.control.health import Health

__all__ = ["RedisBreaker", "RedisSkipped"]

log = logging.getLogger("modelgate.gateway.breaker")
T = TypeVar("T")


class RedisSkipped(Exception):
    """Redis was not asked: the breaker is open, or the call just failed and opened it."""


class RedisBreaker:
    """Open after one failed or slow call; closed again only by a background PING."""

    def __init__(
        self,
        redis: Any,
        health: Health,
        *,
        timeout_s: float = 0.2,
        probe_interval_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis
        self.health = health
        self.timeout_s = timeout_s
        self.probe_interval_s = probe_interval_s
        self.clock = clock
        #: When the breaker opened (``clock`` time), or None while closed.
        self.opened_at: float | None = None
        self._reason = ""
        self._tasks = Tasks()

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None

    async def call(self, work: Callable[[], Awaitable[T]]) -> T:
        """``await work()`` within ``timeout_s``; raises `RedisSkipped` when open, or when
        this call fails (which opens the breaker)."""
        if self.opened_at is not None:
            raise RedisSkipped(self._reason)
        try:
            async with asyncio.timeout(self.timeout_s):
                return await work()
        except Exception as exc:
            self.trip(exc)
            raise RedisSkipped(self._reason) from exc

    def trip(self, exc: BaseException) -> None:
        """Open the breaker because of ``exc`` (a no-op while already open)."""
        if self.opened_at is not None:
            return
        what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if isinstance(exc, TimeoutError):
            what = f"no answer within {self.timeout_s * 1000:.0f} ms"
        self._reason = f"Redis is skipped on the request path until it answers a PING ({what})"
        self.opened_at = self.clock()
        self.health.fail("redis", self._reason)
        log.warning("redis circuit breaker open: %s", what)

    def close(self) -> None:
        if self.opened_at is None:
            return
        log.info("redis circuit breaker closed after %.1f s", self.clock() - self.opened_at)
        self.opened_at = None
        self.health.ok("redis")

    async def probe(self) -> bool:
        """One PING within ``timeout_s``: closes the breaker on an answer, opens it on
        none; returns whether Redis answered."""
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.redis.ping()
        except Exception as exc:
            if self.opened_at is None:
                self.trip(exc)
            else:
                self.health.fail("redis", self._reason)
            return False
        self.close()
        return True

    async def start(self) -> None:
        self._tasks.spawn(self._probe_loop(), "redis-breaker")

    async def stop(self) -> None:
        await self._tasks.stop()

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(self.probe_interval_s)
            await self.probe()
