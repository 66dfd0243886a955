"""`SharedEjections` between two replicas over the run's real Redis: each replica has its
own real `Balancer`; an ejection one decides from its own evidence reaches the other."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis

from gateway.balancing.balancer import Balancer, Outcome, WorkerInfo
from gateway.balancing.shared_ejections import SharedEjections
from gateway.control.health import Health
from gateway.settings import GatewaySettings
from modelgate.core.keys import RedisKeys
from tests.support.fake_workers import refused_url, until

WORKERS = {
    w: WorkerInfo(w, f"http://{w}", frozenset({("m", "1.0.0")}), 0.0) for w in ("a", "b", "c")
}


@dataclass
class Replica:
    balancer: Balancer
    shared: SharedEjections
    health: Health

    def ejected(self, worker: str) -> bool:
        row = next(r for r in self.balancer.snapshot() if r["id"] == worker)
        return row["ejected_until"] is not None

    def fail(self, worker: str) -> None:
        """Report failures of ``worker`` until this replica ejects it."""
        for _ in range(self.balancer.settings.consecutive_failures):
            self.balancer.started(worker)
            self.balancer.finished(worker, 0.01, Outcome.UNAVAILABLE)


async def replica(redis: aioredis.Redis, keys: RedisKeys, origin: str) -> Replica:
    # Up to two of three workers may be out, so the cap never hides what is tested here.
    settings = GatewaySettings(slow_start_s=0, consecutive_failures=2, max_ejected_fraction=0.7)
    balancer = Balancer(settings, rng=random.Random(3))
    balancer.update(WORKERS)
    health = Health()
    shared = SharedEjections(balancer, redis, health, origin=origin, keys=keys)
    balancer.on_eject = shared.publish
    await shared.start()
    return Replica(balancer, shared, health)


async def subscribed(redis: aioredis.Redis, channel: str, count: int) -> None:
    """Until ``count`` subscribers listen on ``channel`` (bounded)."""
    for _ in range(500):
        if dict(await redis.pubsub_numsub(channel)).get(channel.encode(), 0) >= count:
            return
        await asyncio.sleep(0.01)
    raise TimeoutError(f"{count} subscribers on {channel}")


@pytest.fixture
async def pair(redis_url: str, redis_keys: RedisKeys) -> AsyncIterator[tuple[Replica, Replica]]:
    client = aioredis.Redis.from_url(redis_url)
    one = await replica(client, redis_keys, "one")
    two = await replica(client, redis_keys, "two")
    await subscribed(client, redis_keys.ejections_channel, 2)
    yield one, two
    await one.shared.stop()
    await two.shared.stop()
    await client.aclose()


async def test_an_ejection_decided_by_one_replica_reaches_the_other(
    pair: tuple[Replica, Replica],
) -> None:
    one, two = pair
    one.fail("a")
    assert one.ejected("a")
    await until(lambda: two.ejected("a"), "replica two to eject a")
    remote = two.balancer.ejections()[-1]
    assert (remote.worker_id, remote.remote) == ("a", True)
    # The remote ejection lasts as long as the local one (same wall-clock end, ±0.5 s).
    local = one.balancer.ejections()[-1]
    assert abs((local.until - local.at) - (remote.until - remote.at)) < 0.5
    assert not two.ejected("b")
    assert two.balancer.pick("m", "1.0.0") in {"b", "c"}


async def test_a_failure_rate_ejection_reaches_the_other_replica_with_its_reason(
    pair: tuple[Replica, Replica],
) -> None:
    one, two = pair
    for failed in [False, True] * 10:  # 50% of 20 requests, never two failures in a row
        one.balancer.started("c")
        one.balancer.finished("c", 0.01, Outcome.FAILURE if failed else Outcome.OK)
    assert one.ejected("c")
    await until(lambda: two.ejected("c"), "replica two to eject c")
    local, remote = one.balancer.ejections()[-1], two.balancer.ejections()[-1]
    assert (local.reason, local.remote) == ("failure_percentage", False)
    assert (remote.worker_id, remote.reason, remote.remote) == ("c", "failure_percentage", True)


async def test_a_received_ejection_is_not_published_back(
    pair: tuple[Replica, Replica], redis_url: str, redis_keys: RedisKeys
) -> None:
    one, two = pair
    listener = aioredis.Redis.from_url(redis_url)
    async with listener.pubsub() as pubsub:
        await pubsub.subscribe(redis_keys.ejections_channel)
        await subscribed(listener, redis_keys.ejections_channel, 3)
        one.fail("b")
        await until(lambda: two.ejected("b"), "replica two to eject b")
        await one.shared.flush()
        await two.shared.flush()
        messages = []
        # NOTE: an echo would have been sent by now (both flushed); 0.5 s for it to arrive.
        # (A None is also what the subscribe confirmation reads as, so read until then.)
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message is not None:
                messages.append(json.loads(message["data"]))
    await listener.aclose()
    assert [(m["origin"], m["worker"]) for m in messages] == [("one", "b")]
    assert len(one.balancer.ejections()) == 1  # its own echo was ignored


async def test_a_replica_ignores_what_carries_its_own_origin(
    pair: tuple[Replica, Replica], redis_url: str, redis_keys: RedisKeys
) -> None:
    one, two = pair
    sender = aioredis.Redis.from_url(redis_url)
    doc = {"origin": "one", "worker": "c", "until_epoch": time.time() + 30, "count": 1}
    await sender.publish(redis_keys.ejections_channel, json.dumps(doc))
    await sender.aclose()
    await until(lambda: two.ejected("c"), "replica two to eject c")
    assert not one.ejected("c")
    assert two.balancer.ejections()[-1].reason == "remote"  # a message that names none


async def test_an_expired_ejection_is_not_applied(
    pair: tuple[Replica, Replica], redis_url: str, redis_keys: RedisKeys
) -> None:
    one, two = pair
    sender = aioredis.Redis.from_url(redis_url)
    old = {"origin": "three", "worker": "c", "until_epoch": time.time() - 1, "count": 1}
    fresh = {"origin": "three", "worker": "b", "until_epoch": time.time() + 30, "count": 1}
    for doc in (old, fresh):
        await sender.publish(redis_keys.ejections_channel, json.dumps(doc))
    await sender.aclose()
    await until(lambda: two.ejected("b") and one.ejected("b"), "both to eject b")
    assert not one.ejected("c")
    assert not two.ejected("c")


async def test_redis_down_keeps_the_local_ejection_and_reports_degraded(
    redis_keys: RedisKeys,
) -> None:
    dead = aioredis.Redis.from_url(refused_url().replace("http", "redis"), socket_timeout=1)
    settings = GatewaySettings(slow_start_s=0, consecutive_failures=2, max_ejected_fraction=0.7)
    balancer = Balancer(settings)
    balancer.update(WORKERS)
    health = Health()
    # Not started: no listener, so only the failed publish can report Redis.
    shared = SharedEjections(balancer, dead, health, origin="lone", keys=redis_keys)
    balancer.on_eject = shared.publish
    lone = Replica(balancer, shared, health)
    try:
        lone.fail("a")
        await shared.flush()
        assert lone.ejected("a")
        assert health.problems["redis"].startswith("cannot share an ejection"), health.problems
    finally:
        await dead.aclose()
