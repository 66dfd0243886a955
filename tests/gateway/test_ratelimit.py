"""Rate limits and the Redis circuit breaker: the Redis token bucket (real Redis), the
in-memory one, per-token limits, fail-open/closed, and a hung (SIGSTOPped) Redis skipped
after one bounded call and taken back by the background PING."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis

from gateway.breaker import RedisBreaker
from gateway.control.health import Health
from gateway.errors import GatewayError, RateLimited
from gateway.identity import Caller
from gateway.ratelimit import RateLimiter
from registry.tokens import Grant
from tests.support.isolation import REDIS_URL, delete_prefix, scoped
from tests.support.services import Service, redis_server

KEYS = scoped("ratelimit")
ANON = Caller("addr:1.2.3.4", "address 1.2.3.4")


def token(rps: float | None, burst: float | None = None, token_id: int = 7) -> Caller:
    grant = Grant(token_id, "t", frozenset({"infer"}), rps, burst)
    return Caller(f"token:{token_id}", 'token "t"', grant)


async def drain(limiter: RateLimiter, caller: Caller, attempts: int) -> int:
    allowed = 0
    refused: list[RateLimited] = []
    for _ in range(attempts):
        try:
            await limiter.check(caller)
            allowed += 1
        except RateLimited as exc:
            refused.append(exc)
    assert all(e.status_code == 429 and int(e.headers["Retry-After"]) >= 1 for e in refused)
    assert all(caller.label in e.message for e in refused)
    return allowed


async def test_redis_bucket_is_shared_by_replicas() -> None:
    caller = Caller(f"token:{uuid.uuid4().hex[:16]}", "x")
    one, two = aioredis.from_url(REDIS_URL), aioredis.from_url(REDIS_URL)
    try:
        first = RateLimiter(0.001, 5, breaker=RedisBreaker(one, Health()), keys=KEYS)
        second = RateLimiter(0.001, 5, breaker=RedisBreaker(two, Health()), keys=KEYS)
        assert await drain(first, caller, 3) + await drain(second, caller, 5) == 5
        assert await one.exists(KEYS.rate_limit(caller.key)) == 1
    finally:
        await delete_prefix(one, KEYS.prefix)
        await one.aclose()
        await two.aclose()


async def test_local_bucket_refills_with_the_clock() -> None:
    now = [0.0]
    limiter = RateLimiter(2.0, 2, breaker=None, clock=lambda: now[0])
    assert await drain(limiter, ANON, 5) == 2
    now[0] += 1.0
    assert await drain(limiter, ANON, 5) == 2
    assert await drain(limiter, Caller("addr:5.6.7.8", "address 5.6.7.8"), 5) == 2  # per client


async def test_local_buckets_stay_bounded_and_keep_the_busy_ones() -> None:
    now = [0.0]
    limiter = RateLimiter(1.0, 2, breaker=None, clock=lambda: now[0], local_limit=4)
    busy = Caller("addr:busy", "address busy")
    assert await drain(limiter, busy, 3) == 2
    for i in range(3):
        await drain(limiter, Caller(f"addr:{i}", f"address {i}"), 1)
    now[0] += 1.0  # the one-request buckets are full again; busy has refilled one token
    await drain(limiter, Caller("addr:new", "address new"), 1)  # makes room: full ones go
    assert set(limiter._local) == {"addr:busy", "addr:new"}
    assert await drain(limiter, busy, 3) == 1  # not a fresh bucket
    for i in range(100):  # many addresses at once: memory stays bounded
        await drain(limiter, Caller(f"addr:x{i}", f"address x{i}"), 1)
        assert len(limiter._local) <= 4


async def test_a_token_has_its_own_limit_whatever_the_default() -> None:
    now = [0.0]
    off = RateLimiter(0.0, 0.0, breaker=None, clock=lambda: now[0])
    assert await drain(off, ANON, 50) == 50  # no default limit
    assert await drain(off, token(1.0, 3), 10) == 3  # the token's own limit applies
    assert await drain(off, token(2.0, token_id=8), 10) == 2  # burst defaults to its rate
    limited = RateLimiter(1.0, 2, breaker=None, clock=lambda: now[0])
    assert await drain(limited, token(None), 10) == 2  # no limit of its own: the default
    assert await drain(limited, token(0.0, token_id=9), 50) == 50  # 0: unlimited
    assert await drain(limited, token(None, 5, token_id=10), 10) == 5  # its burst, default rate
    now[0] += 1.0
    assert await drain(limited, token(None, 5, token_id=10), 10) == 1


@pytest.mark.parametrize("fail_open", [True, False])
async def test_redis_down_fails_open_or_closed(fail_open: bool) -> None:
    dead = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    health = Health()
    limiter = RateLimiter(1.0, 1, breaker=RedisBreaker(dead, health), fail_open=fail_open)
    try:
        if fail_open:
            await limiter.check(ANON)
        else:
            with pytest.raises(GatewayError) as info:
                await limiter.check(ANON)
            assert info.value.status_code == 503
            assert "fail closed" in info.value.message
        assert "redis" in health.problems
    finally:
        await dead.aclose()


@pytest.fixture
def hung_redis() -> Iterator[Service]:
    """A throwaway redis-server of this test's own (never the run's shared one)."""
    service = redis_server()
    service.start()
    try:
        yield service
    finally:
        assert service.process is not None
        os.kill(service.process.pid, signal.SIGCONT)
        service.stop()


async def test_a_hung_redis_costs_one_timeout_then_is_skipped_until_a_ping(
    hung_redis: Service,
) -> None:
    assert hung_redis.process is not None
    client = aioredis.from_url(f"redis://127.0.0.1:{hung_redis.port}/0")
    health = Health()
    breaker = RedisBreaker(client, health, timeout_s=0.2)
    limiter = RateLimiter(1000.0, 1000, breaker=breaker, keys=KEYS)
    try:
        await limiter.check(ANON)  # healthy: Redis answers
        assert not breaker.is_open
        os.kill(hung_redis.process.pid, signal.SIGSTOP)
        started = time.monotonic()
        await limiter.check(ANON)  # fails open after one bounded wait
        assert breaker.is_open
        assert "redis" in health.problems
        # NOTE: the bound is the criterion itself (200 ms), with room for a busy machine.
        assert time.monotonic() - started < 1.0
        calls = 0

        async def counted() -> None:
            nonlocal calls
            calls += 1

        for _ in range(100):
            with pytest.raises(Exception, match="skipped"):
                await breaker.call(counted)
            await limiter.check(ANON)
        assert calls == 0  # open: Redis is not even tried
        assert not await breaker.probe()  # still hung: stays open, still degraded
        assert breaker.is_open
        assert "redis" in health.problems
        os.kill(hung_redis.process.pid, signal.SIGCONT)
        assert await breaker.probe()
        assert not breaker.is_open
        assert "redis" not in health.problems
        await breaker.call(counted)
        assert calls == 1
    finally:
        await client.aclose()


async def test_the_background_ping_opens_and_closes_the_breaker(hung_redis: Service) -> None:
    """Readiness follows Redis without any request: the probe loop trips and recovers."""
    import asyncio

    assert hung_redis.process is not None
    client = aioredis.from_url(f"redis://127.0.0.1:{hung_redis.port}/0")
    health = Health()
    breaker = RedisBreaker(client, health, timeout_s=0.2, probe_interval_s=0.05)
    await breaker.start()
    try:
        os.kill(hung_redis.process.pid, signal.SIGSTOP)
        async with asyncio.timeout(10):
            while not breaker.is_open:
                await asyncio.sleep(0.02)
        assert "redis" in health.problems
        os.kill(hung_redis.process.pid, signal.SIGCONT)
        async with asyncio.timeout(10):
            while breaker.is_open:
                await asyncio.sleep(0.02)
        assert "redis" not in health.problems
    finally:
        await breaker.stop()
        await client.aclose()


async def test_an_open_breaker_fails_closed_at_once_without_asking_redis() -> None:
    class Unreachable:
        def register_script(self, script: str) -> object:
            async def call(**_: object) -> object:
                raise AssertionError("Redis was asked while the breaker was open")

            return call

    health = Health()
    breaker = RedisBreaker(Unreachable(), health)
    breaker.trip(ConnectionError("refused"))
    limiter = RateLimiter(1.0, 1, breaker=breaker, fail_open=False)
    for _ in range(3):
        with pytest.raises(GatewayError) as info:
            await limiter.check(ANON)
        assert info.value.status_code == 503
        assert info.value.headers == {"Retry-After": "1"}
    assert "refused" in health.problems["redis"]
