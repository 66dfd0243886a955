"""`WorkerDirectory` over the real sources: the migrated registry's ``workers`` table
(SQLite and PostgreSQL) and the run's Redis server; only the hand-off (``on_workers``) is
recorded by the test.

The ``workers`` table is shared by the session, so every worker here has an id of its own
and the tests look only at those ids.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.balancing.balancer import WorkerInfo
from gateway.control.background import follow_channel
from gateway.control.discovery import WorkerDirectory
from gateway.control.health import Health
from modelgate.core.announce import Announcement, LoadedEntry, encode
from modelgate.core.keys import RedisKeys
from registry.db import make_engine, make_sessionmaker
from registry.models import Worker
from tests.support.fake_workers import refused_url, until


@dataclass
class Seen:
    """What the directory handed over, restricted to this test's workers."""

    ours: set[str]
    calls: list[dict[str, WorkerInfo]] = field(default_factory=list)

    def __call__(self, workers: Mapping[str, WorkerInfo]) -> None:
        self.calls.append({k: v for k, v in workers.items() if k in self.ours})

    @property
    def last(self) -> dict[str, WorkerInfo]:
        return self.calls[-1] if self.calls else {}


def announcement(
    worker_id: str, *versions: str, state: str = "serving", age_s: float = 0.0
) -> Announcement:
    now = datetime.now(UTC) - timedelta(seconds=age_s)
    return Announcement(
        id=worker_id,
        url=f"http://127.0.0.1:1/{worker_id}",
        state=state,
        loaded=[LoadedEntry("m", v, ready=True) for v in versions],
        started_at=now - timedelta(seconds=60),
        last_seen=now,
    )


class Sources:
    def __init__(self, engine: AsyncEngine, redis: aioredis.Redis, keys: RedisKeys) -> None:
        self.sessions = make_sessionmaker(engine)
        self.redis, self.keys = redis, keys
        self.ids: set[str] = set()

    def new_id(self) -> str:
        worker_id = f"disc-{uuid.uuid4().hex[:8]}"
        self.ids.add(worker_id)
        return worker_id

    async def in_sql(self, doc: Announcement) -> None:
        async with self.sessions() as session, session.begin():
            await session.merge(
                Worker(
                    id=doc.id,
                    url=doc.url,
                    loaded=[
                        {"model": e.model, "version": e.version, "ready": e.ready}
                        for e in doc.loaded
                    ],
                    state=doc.state,
                    started_at=doc.started_at,
                    last_seen=doc.last_seen,
                )
            )

    async def in_redis(self, doc: Announcement) -> None:
        await self.redis.set(self.keys.worker(doc.id), encode(doc), ex=60)

    async def cleanup(self) -> None:
        async with self.sessions() as session, session.begin():
            for worker_id in self.ids:
                row = await session.get(Worker, worker_id)
                if row is not None:
                    await session.delete(row)

    def directory(
        self, seen: Seen, *, redis: aioredis.Redis | None = None, **kwargs: float
    ) -> tuple[WorkerDirectory, Health]:
        health = Health()
        directory = WorkerDirectory(
            self.sessions, seen, health, redis=redis, keys=self.keys, **kwargs
        )
        return directory, health


@pytest.fixture
async def sources(
    engine: AsyncEngine, redis_url: str, redis_keys: RedisKeys
) -> AsyncIterator[Sources]:
    client = aioredis.Redis.from_url(redis_url)
    made = Sources(engine, client, redis_keys)
    yield made
    await made.cleanup()
    await client.aclose()


async def test_a_fresh_serving_row_is_handed_over_with_its_ready_versions(
    sources: Sources,
) -> None:
    worker = sources.new_id()
    await sources.in_sql(announcement(worker, "1.0.0", "1.1.0"))
    seen = Seen(sources.ids)
    directory, health = sources.directory(seen)
    await directory.refresh()
    info = seen.last[worker]
    assert info.url == f"http://127.0.0.1:1/{worker}"
    assert info.ready == {("m", "1.0.0"), ("m", "1.1.0")}
    assert not health.degraded


async def test_stale_and_stopped_workers_are_left_out_and_draining_ones_offer_nothing(
    sources: Sources,
) -> None:
    fresh, stale, stopped, draining = (sources.new_id() for _ in range(4))
    await sources.in_sql(announcement(fresh, "1.0.0"))
    await sources.in_sql(announcement(stale, "1.0.0", age_s=30))
    await sources.in_sql(announcement(stopped, "1.0.0", state="stopped"))
    await sources.in_sql(announcement(draining, "1.0.0", state="draining"))
    seen = Seen(sources.ids)
    directory, _ = sources.directory(seen, stale_s=10)
    await directory.refresh()
    assert set(seen.last) == {fresh, draining}
    assert seen.last[draining].ready == frozenset()
    assert seen.last[fresh].ready == {("m", "1.0.0")}


async def test_the_freshest_announcement_of_a_worker_wins_across_sources(
    sources: Sources,
) -> None:
    newer_in_redis, newer_in_sql = sources.new_id(), sources.new_id()
    await sources.in_sql(announcement(newer_in_redis, "1.0.0", age_s=2))
    await sources.in_redis(announcement(newer_in_redis, "2.0.0"))
    await sources.in_sql(announcement(newer_in_sql, "3.0.0"))
    await sources.in_redis(announcement(newer_in_sql, "4.0.0", age_s=2))
    seen = Seen(sources.ids)
    directory, _ = sources.directory(seen, redis=sources.redis)
    await directory.refresh()
    assert seen.last[newer_in_redis].ready == {("m", "2.0.0")}
    assert seen.last[newer_in_sql].ready == {("m", "3.0.0")}


async def test_a_worker_only_in_redis_is_found(sources: Sources) -> None:
    worker = sources.new_id()
    await sources.in_redis(announcement(worker, "1.0.0"))
    seen = Seen(sources.ids)
    directory, _ = sources.directory(seen, redis=sources.redis)
    await directory.refresh()
    assert seen.last[worker].ready == {("m", "1.0.0")}


async def test_a_malformed_redis_announcement_is_skipped_not_fatal(sources: Sources) -> None:
    good, bad = sources.new_id(), sources.new_id()
    await sources.in_redis(announcement(good, "1.0.0"))
    await sources.redis.set(sources.keys.worker(bad), b'{"id": "x"}', ex=60)
    seen = Seen(sources.ids)
    directory, health = sources.directory(seen, redis=sources.redis)
    await directory.refresh()
    assert set(seen.last) == {good}
    assert not health.degraded


class Wall:
    """A wall clock the test moves (announcements are aged by wall-clock time)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


async def test_slow_start_time_is_kept_while_a_worker_stays_and_reset_when_it_returns(
    sources: Sources,
) -> None:
    worker, other = sources.new_id(), sources.new_id()
    clock = iter(float(n) for n in range(100))
    wall = Wall()
    await sources.in_sql(announcement(worker, "1.0.0"))
    seen = Seen(sources.ids)
    directory, _ = sources.directory(seen, stale_s=10, monotonic=lambda: next(clock), wall=wall)
    await directory.refresh()
    first = seen.last[worker].started_at
    await sources.in_sql(announcement(other, "1.0.0"))  # the set changes: a new hand-off
    await directory.refresh()
    assert set(seen.last) == {worker, other}
    assert seen.last[worker].started_at == first
    wall.now += timedelta(seconds=30)  # worker's heartbeat goes stale; other announces anew
    await sources.in_sql(announcement(other, "1.0.0", age_s=-30))
    await directory.refresh()
    assert set(seen.last) == {other}
    await sources.in_sql(announcement(worker, "1.0.0", age_s=-30))  # back
    await directory.refresh()
    assert seen.last[worker].started_at > first


async def test_redis_restarted_empty_with_the_database_down_keeps_workers_until_they_age(
    sources: Sources,
) -> None:
    worker = sources.new_id()
    wall = Wall()
    await sources.in_sql(announcement(worker, "1.0.0"))
    await sources.in_redis(announcement(worker, "1.0.0"))
    seen = Seen(sources.ids)
    directory, health = sources.directory(seen, redis=sources.redis, stale_s=10, wall=wall)
    await directory.refresh()
    assert set(seen.last) == {worker}
    # Redis answers, but empty of this worker; the database refuses connections.
    await sources.redis.delete(sources.keys.worker(worker))
    down = make_engine(f"postgresql+asyncpg://{refused_url().removeprefix('http://')}/x")
    directory.sessions = make_sessionmaker(down)
    try:
        wall.now += timedelta(seconds=9)  # its last heartbeat is still fresh
        await directory.refresh()
        assert set(seen.last) == {worker}
        assert worker in directory.announcements
        assert set(health.problems) == {"database"}
        wall.now += timedelta(seconds=2)  # now it is not, and no source says otherwise
        await directory.refresh()
        assert seen.last == {}
    finally:
        await down.dispose()


async def test_a_source_that_forgets_a_worker_does_not_drop_it_while_it_is_fresh(
    sources: Sources,
) -> None:
    in_both, only_redis = sources.new_id(), sources.new_id()
    wall = Wall()
    await sources.in_sql(announcement(in_both, "1.0.0"))
    await sources.in_redis(announcement(in_both, "1.0.0"))
    await sources.in_redis(announcement(only_redis, "2.0.0"))
    seen = Seen(sources.ids)
    directory, health = sources.directory(seen, redis=sources.redis, stale_s=10, wall=wall)
    await directory.refresh()
    assert set(seen.last) == {in_both, only_redis}
    for worker in (in_both, only_redis):  # Redis restarted empty; SQL answers as ever
        await sources.redis.delete(sources.keys.worker(worker))
    wall.now += timedelta(seconds=5)
    await directory.refresh()
    assert set(seen.last) == {in_both, only_redis}
    assert seen.last[only_redis].ready == {("m", "2.0.0")}
    assert not health.degraded
    await sources.in_redis(announcement(only_redis, "2.0.0", age_s=-5))  # re-announced
    wall.now += timedelta(seconds=6)  # in_both's SQL heartbeat (at 0 s) is stale now
    await directory.refresh()
    assert set(seen.last) == {only_redis}


async def test_a_stopped_worker_stays_gone_though_a_lagging_source_says_serving(
    sources: Sources,
) -> None:
    worker = sources.new_id()
    await sources.in_redis(announcement(worker, "1.0.0", age_s=1))
    seen = Seen(sources.ids)
    directory, _ = sources.directory(seen, redis=sources.redis, stale_s=10)
    await directory.refresh()
    assert set(seen.last) == {worker}
    await sources.in_sql(announcement(worker, "1.0.0", state="stopped"))
    await directory.refresh()
    assert seen.last == {}
    await sources.cleanup()  # the stopped row is gone; Redis still has the older copy
    await directory.refresh()
    assert seen.last == {}


async def test_an_unchanged_set_is_not_handed_over_again(sources: Sources) -> None:
    worker = sources.new_id()
    await sources.in_sql(announcement(worker, "1.0.0"))
    handed: list[Mapping[str, WorkerInfo]] = []
    directory, _ = sources.directory(Seen(sources.ids))
    directory.on_workers = handed.append
    await directory.refresh()
    await directory.refresh()
    assert len(handed) == 1


async def test_redis_down_keeps_sql_workers_and_reports_redis_degraded(sources: Sources) -> None:
    worker = sources.new_id()
    await sources.in_sql(announcement(worker, "1.0.0"))
    dead = aioredis.Redis.from_url(refused_url().replace("http", "redis"), socket_timeout=1)
    seen = Seen(sources.ids)
    directory, health = sources.directory(seen, redis=dead)
    try:
        await directory.refresh()
    finally:
        await dead.aclose()
    assert seen.last[worker].ready == {("m", "1.0.0")}
    assert set(health.problems) == {"redis"}


async def test_redis_down_is_logged_once_per_check_not_on_every_poll(
    sources: Sources, caplog: pytest.LogCaptureFixture
) -> None:
    """Discovery and a channel follower both lose Redis: each check says so once. (They
    reported under one check name, overwrote each other's message, and the gateway logged
    "redis degraded" again on every poll.)"""
    follows = 0

    dead = aioredis.Redis.from_url(refused_url().replace("http", "redis"), socket_timeout=1)
    directory, health = sources.directory(Seen(sources.ids), redis=dead)
    fail = health.fail

    def counting_fail(component: str, message: str, check: str | None = None) -> None:
        nonlocal follows
        follows += message.startswith("notifications lost")
        fail(component, message, check)

    health.fail = counting_fail  # type: ignore[method-assign]
    caplog.set_level(logging.WARNING, logger="modelgate.gateway.health")
    follower = asyncio.create_task(
        follow_channel(dead, "modelgate:test", lambda _: None, health, "notifications lost")
    )
    try:
        for round_ in range(1, 3):
            await directory.refresh()
            await until(lambda r=round_: follows >= r, f"the follower's failure {round_}")  # type: ignore[misc]
        await directory.refresh()
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await dead.aclose()
    assert set(health.problems) == {"redis"}
    warnings = [r.getMessage() for r in caplog.records if "redis degraded" in r.getMessage()]
    assert len(warnings) == 2, warnings


async def test_every_source_down_keeps_the_last_known_workers(sources: Sources) -> None:
    worker = sources.new_id()
    await sources.in_sql(announcement(worker, "1.0.0"))
    handed: list[Mapping[str, WorkerInfo]] = []
    directory, health = sources.directory(Seen(sources.ids))
    directory.on_workers = handed.append
    await directory.refresh()
    # The same directory, its database now a server that refuses connections.
    down = make_engine(f"postgresql+asyncpg://{refused_url().removeprefix('http://')}/x")
    directory.sessions = make_sessionmaker(down)
    try:
        await directory.refresh()
    finally:
        await down.dispose()
    assert len(handed) == 1  # nothing was withdrawn
    assert worker in directory.announcements
    assert set(health.problems) == {"database"}


async def test_a_notification_on_the_workers_channel_refreshes_at_once(sources: Sources) -> None:
    worker = sources.new_id()
    seen = Seen(sources.ids)
    directory, _ = sources.directory(seen, redis=sources.redis, poll_s=3600)
    await directory.start()
    try:
        channel = sources.keys.workers_channel
        for _ in range(200):  # bounded: until the directory's SUBSCRIBE has landed
            if dict(await sources.redis.pubsub_numsub(channel)).get(channel.encode()):
                break
            await asyncio.sleep(0.01)
        await sources.in_redis(announcement(worker, "1.0.0"))
        await sources.redis.publish(sources.keys.workers_channel, worker)
        await until(lambda: worker in seen.last, "the announced worker to be handed over", 5)
    finally:
        await directory.stop()
