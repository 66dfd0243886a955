"""Rate limits: the Redis token bucket (real Redis), the in-memory one, fail-open/closed."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis

from gateway.control.health import Health
from gateway.errors import GatewayError, RateLimited
from gateway.ratelimit import RateLimiter, client_key
from tests.support.isolation import REDIS_URL, delete_prefix, scoped

KEYS = scoped("ratelimit")


async def drain(limiter: RateLimiter, client: str, attempts: int) -> int:
    allowed = 0
    refused: list[RateLimited] = []
    for _ in range(attempts):
        try:
            await limiter.check(client)
            allowed += 1
        except RateLimited as exc:
            refused.append(exc)
    assert all(e.status_code == 429 and int(e.headers["Retry-After"]) >= 1 for e in refused)
    return allowed


async def test_redis_bucket_is_shared_by_replicas() -> None:
    client = f"token:{uuid.uuid4().hex[:16]}"
    one, two = aioredis.from_url(REDIS_URL), aioredis.from_url(REDIS_URL)
    try:
        first = RateLimiter(0.001, 5, redis=one, health=Health(), keys=KEYS)
        second = RateLimiter(0.001, 5, redis=two, health=Health(), keys=KEYS)
        assert await drain(first, client, 3) + await drain(second, client, 5) == 5
        assert await one.exists(KEYS.rate_limit(client)) == 1
    finally:
        await delete_prefix(one, KEYS.prefix)
        await one.aclose()
        await two.aclose()


async def test_local_bucket_refills_with_the_clock() -> None:
    now = [0.0]
    limiter = RateLimiter(2.0, 2, redis=None, health=Health(), clock=lambda: now[0])
    assert await drain(limiter, "addr:1.2.3.4", 5) == 2
    now[0] += 1.0
    assert await drain(limiter, "addr:1.2.3.4", 5) == 2
    assert await drain(limiter, "addr:5.6.7.8", 5) == 2  # per client


@pytest.mark.parametrize("fail_open", [True, False])
async def test_redis_down_fails_open_or_closed(fail_open: bool) -> None:
    dead = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    health = Health()
    limiter = RateLimiter(1.0, 1, redis=dead, health=health, fail_open=fail_open)
    try:
        if fail_open:
            await limiter.check("addr:x")
        else:
            with pytest.raises(GatewayError) as info:
                await limiter.check("addr:x")
            assert info.value.status_code == 503
        assert "redis" in health.problems
    finally:
        await dead.aclose()


def test_client_key_hashes_tokens() -> None:
    key = client_key({"authorization": "Bearer secret"}, ("10.0.0.1", 5))
    assert key.startswith("token:")
    assert "secret" not in key
    assert client_key({}, ("10.0.0.1", 5)) == "addr:10.0.0.1"
