"""The per-attempt outcome counters of rollout gates: slots, windows, the p99 estimate, and
the Redis mode summing two replicas (a real Redis, the run's own keys)."""

from __future__ import annotations

import bisect
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from gateway.control.health import Health
from gateway.control.rollout_stats import EDGES_MS, OutcomeCounters, p99_ms
from modelgate.core.keys import RedisKeys


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_a_window_sums_the_slots_between_its_bounds_only() -> None:
    clock = Clock()
    counters = OutcomeCounters(clock=clock)
    start = clock.now
    for second in range(5):
        clock.now = start + second + 0.5
        for n in range(10):
            counters.record("m", "1.0.0", error=n < second, latency_s=0.01)
    counters.record("m", "2.0.0", error=True, latency_s=0.01)  # another version
    counters.record("other", "1.0.0", error=True, latency_s=0.01)  # another model

    async def window(since: float, until: float) -> tuple[int, int]:
        stats = await counters.window("m", "1.0.0", since, until)
        return stats.requests, stats.errors

    assert await window(start + 1, start + 3.9) == (30, 1 + 2 + 3)
    assert await window(start, start + 10) == (50, 10)
    assert await window(start + 6, start + 10) == (0, 0)


async def test_error_rate_and_p99_come_from_the_window() -> None:
    clock = Clock()
    counters = OutcomeCounters(clock=clock)
    for n in range(1000):
        counters.record("m", "1.0.0", error=n % 50 == 0, latency_s=0.1 if n >= 990 else 0.005)
    stats = await counters.window("m", "1.0.0", clock.now, clock.now)
    assert (stats.requests, stats.errors, stats.error_rate) == (1000, 20, 0.02)
    # 99% of attempts at 5 ms, the slowest 1% at 100 ms: the p99 is 5 ms's bucket.
    assert stats.p99_ms is not None
    assert 5.0 / 1.19 < stats.p99_ms <= 5.0 * 1.19
    empty = await counters.window("m", "9.9.9", clock.now, clock.now)
    assert (empty.requests, empty.error_rate, empty.p99_ms) == (0, 0.0, None)
    assert empty.as_dict() == {"requests": 0, "errors": 0, "error_rate": 0.0, "p99_ms": None}


@pytest.mark.parametrize("latency_ms", [0.05, 0.3, 2.0, 17.0, 250.0, 4000.0, 60_000.0])
def test_the_p99_of_one_latency_is_within_one_bucket_of_it(latency_ms: float) -> None:
    clock = Clock()
    counters = OutcomeCounters(clock=clock)
    for _ in range(200):
        counters.record("m", "v", error=False, latency_s=latency_ms / 1000)
    cell = counters._slots[("m", "v", int(clock.now))]
    estimate = p99_ms(cell[2:])
    assert estimate is not None
    assert latency_ms / 1.19 <= estimate <= max(latency_ms * 1.19, EDGES_MS[0])


def test_a_tenfold_slower_version_reads_about_ten_times_the_p99() -> None:
    fast = [0] * (len(EDGES_MS) + 1)
    slow = [0] * (len(EDGES_MS) + 1)
    for n in range(500):
        fast[bisect.bisect_left(EDGES_MS, 2.0 + (n % 7) * 0.1)] += 1
        slow[bisect.bisect_left(EDGES_MS, 20.0 + (n % 7))] += 1
    fast_p99, slow_p99 = p99_ms(fast), p99_ms(slow)
    assert fast_p99 is not None
    assert slow_p99 is not None
    assert 7.0 < slow_p99 / fast_p99 < 13.0


def test_latency_beyond_the_last_edge_reads_as_the_last_edge() -> None:
    buckets = [0] * (len(EDGES_MS) + 1)
    buckets[-1] = 10
    assert p99_ms(buckets) == EDGES_MS[-1]
    assert p99_ms([0] * (len(EDGES_MS) + 1)) is None


def test_in_process_slots_older_than_the_retention_are_dropped() -> None:
    clock = Clock()
    counters = OutcomeCounters(clock=clock, retention_s=120)
    counters.record("m", "v", error=False, latency_s=0.001)
    clock.now += 100
    counters.record("m", "v", error=False, latency_s=0.001)
    assert len(counters._slots) == 2
    clock.now += 100  # the first slot is now 200 s old, the second 100 s
    counters.record("m", "v", error=False, latency_s=0.001)
    assert sorted(k[2] for k in counters._slots) == [
        int(clock.now) - 100,
        int(clock.now),
    ]


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.mark.redis
async def test_two_replicas_windows_sum_both_through_redis(
    redis_client: aioredis.Redis, redis_keys: RedisKeys
) -> None:
    clock = Clock()
    one = OutcomeCounters(redis=redis_client, keys=redis_keys, clock=clock, retention_s=60)
    two = OutcomeCounters(redis=redis_client, keys=redis_keys, clock=clock, retention_s=60)
    for _ in range(30):
        one.record("m", "2.0.0", error=True, latency_s=0.002)
    for _ in range(70):
        two.record("m", "2.0.0", error=False, latency_s=0.002)
    clock.now += 1
    two.record("m", "2.0.0", error=False, latency_s=0.002)
    assert (await one.window("m", "2.0.0", clock.now - 1, clock.now)).requests == 0  # unflushed
    await one.flush()
    await two.flush()
    assert one._slots == {}
    assert two._slots == {}
    stats = await two.window("m", "2.0.0", clock.now - 1, clock.now)
    assert (stats.requests, stats.errors) == (101, 30)
    assert (await one.window("m", "2.0.0", clock.now, clock.now)).requests == 1
    # A second flush adds only what came since the first.
    one.record("m", "2.0.0", error=False, latency_s=0.002)
    await one.flush()
    assert (await two.window("m", "2.0.0", clock.now - 1, clock.now)).requests == 102
    key = redis_keys.rollout_stats("m", "2.0.0", int(clock.now))
    assert 0 < await redis_client.ttl(key) <= 60


@pytest.mark.redis
async def test_increments_a_failed_flush_could_not_send_go_with_the_next(
    redis_url: str, redis_keys: RedisKeys
) -> None:
    clock = Clock()
    dead = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    health = Health()
    counters = OutcomeCounters(redis=dead, health=health, keys=redis_keys, clock=clock)
    for _ in range(5):
        counters.record("m", "v", error=False, latency_s=0.001)
    await counters.flush()
    assert "redis" in health.problems
    counters.record("m", "v", error=True, latency_s=0.001)
    await dead.aclose()
    live = aioredis.from_url(redis_url)
    try:
        counters.redis = live
        await counters.flush()
        stats = await counters.window("m", "v", clock.now, clock.now)
        assert (stats.requests, stats.errors) == (6, 1)
    finally:
        await live.aclose()


async def test_a_window_reaches_back_no_further_than_the_retention() -> None:
    clock = Clock()
    counters = OutcomeCounters(clock=clock, retention_s=20)
    counters.record("m", "v", error=False, latency_s=0.001)
    clock.now += 30  # too soon to prune the first slot
    counters.record("m", "v", error=False, latency_s=0.001)
    assert len(counters._slots) == 2
    assert (await counters.window("m", "v", 0, clock.now)).requests == 1
