"""Heartbeat: the worker announces itself so gateways find it without configuration.

Every ``interval`` seconds, and at once whenever the data plane signals a change (load,
unload, ready, draining), the announcer upserts this worker's row in the registry's
``workers`` table and, with Redis, sets its key to the same announcement with a TTL and
publishes the id on the workers channel (the wire format is `modelgate.core.announce`).
It runs as its own tasks, one per sink, so that a hung database (a connection that stops
answering until its statement timeout) never delays the Redis heartbeat, nor the other way
round: nothing here is on the request path. Failures are logged (once per distinct
message) and retried on the next beat; on stop the last announcement says ``stopped``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from backends.dataplane import DataPlane
from modelgate.core.announce import Announcement, LoadedEntry, encode
from modelgate.core.keys import DEFAULT_KEYS, RedisKeys
from registry.db import WRITE_INTENT, make_engine, make_sessionmaker
from registry.models import Worker

__all__ = ["Announcer"]

log = logging.getLogger("modelgate.worker.announce")


class Announcer:
    """Announces ``plane``'s state to SQL and/or Redis until stopped."""

    def __init__(
        self,
        plane: DataPlane,
        *,
        worker_id: str,
        url: str,
        grpc_url: str | None = None,
        sessionmaker: async_sessionmaker[AsyncSession] | None = None,
        redis: Any | None = None,
        interval_s: float = 2.0,
        ttl_s: float = 10.0,
        engine: AsyncEngine | None = None,
        keys: RedisKeys = DEFAULT_KEYS,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.plane = plane
        self.worker_id = worker_id
        self.url = url
        self.grpc_url = grpc_url
        self._sessionmaker = sessionmaker
        self._redis = redis
        self._interval = interval_s
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._engine = engine
        self._keys = keys
        self._now = now
        self.started_at = now()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_error: str | None = None
        #: Announcements completed (or failed) per sink.
        self._written: dict[str, int] = {}

    @classmethod
    def from_settings(cls, settings: Any, plane: DataPlane, *, database: bool) -> Announcer:
        engine = (
            make_engine(settings.database_url, **settings.engine_options()) if database else None
        )
        redis = None
        if settings.redis_url:
            import redis.asyncio as aioredis

            redis = aioredis.from_url(settings.redis_url)
        return cls(
            plane,
            worker_id=settings.worker_id,
            url=settings.advertised_url,
            grpc_url=settings.advertised_grpc_url,
            sessionmaker=make_sessionmaker(engine) if engine is not None else None,
            redis=redis,
            interval_s=settings.heartbeat_interval_s,
            ttl_s=settings.heartbeat_ttl_s,
            engine=engine,
            keys=RedisKeys(settings.redis_prefix),
        )

    def payload(self) -> Announcement:
        """The announcement of this worker's state now."""
        snap = self.plane.snapshot()
        return Announcement(
            id=self.worker_id,
            url=self.url,
            grpc_url=self.grpc_url,
            state=snap["state"],
            loaded=[LoadedEntry(v["model"], v["version"], v["ready"]) for v in snap["loaded"]],
            in_flight=snap["in_flight"],
            queue_depth=snap["queue_depth"],
            capacity=snap["capacity"],
            device=snap["device"],
            started_at=self.started_at,
            last_seen=self._now(),
        )

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="announcer")

    async def stop(self) -> None:
        """Stop beating, announce the final state once, release connections.

        NOTE: the loop is asked to stop rather than cancelled: a cancellation that lands in
        the middle of a database write can be swallowed by the driver, leaving the loop
        alive and ``stop`` waiting for it.
        """
        if self._task is not None:
            self._stopping = True
            self.plane.changed.set()
            try:
                await asyncio.wait_for(self._task, 10)
            except TimeoutError:
                log.warning("announcer did not stop within 10 s")
            self._task = None
        await self.announce()
        if self._redis is not None:
            await self._redis.aclose()
        if self._engine is not None:
            await self._engine.dispose()

    @property
    def beats(self) -> int:
        """Rounds that every sink has completed (successfully or not)."""
        return min(self._written.values(), default=0)

    def _sinks(self) -> dict[str, Callable[[Announcement], Awaitable[None]]]:
        sinks: dict[str, Callable[[Announcement], Awaitable[None]]] = {}
        if self._sessionmaker is not None:
            sinks["database"] = self._write_row
        if self._redis is not None:
            sinks["redis"] = self._write_redis
        return sinks

    async def _run(self) -> None:
        wakes = {name: asyncio.Event() for name in self._sinks()}
        loops = [
            asyncio.create_task(self._sink_loop(name, write, wakes[name]), name=f"announce-{name}")
            for name, write in self._sinks().items()
        ]
        while not self._stopping:
            self.plane.changed.clear()
            for wake in wakes.values():
                wake.set()
            # NOTE: not wait_for, which can swallow a cancellation on 3.11 (gh-86296).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self.plane.changed.wait()
        for wake in wakes.values():
            wake.set()
        await asyncio.gather(*loops)

    async def _sink_loop(
        self, sink: str, write: Callable[[Announcement], Awaitable[None]], wake: asyncio.Event
    ) -> None:
        """Announce to one sink each time ``wake`` is set (a wake while it writes is kept)."""
        while True:
            await wake.wait()
            wake.clear()
            if self._stopping:
                return
            await self._guard(sink, write(self.payload()))
            self._written[sink] = self._written.get(sink, 0) + 1

    async def announce(self) -> None:
        """One announcement to every configured sink, concurrently; errors are logged, never
        raised."""
        payload = self.payload()
        sinks = self._sinks()
        await asyncio.gather(*(self._guard(name, write(payload)) for name, write in sinks.items()))
        for name in sinks:
            self._written[name] = self._written.get(name, 0) + 1

    async def _guard(self, sink: str, work: Any) -> None:
        try:
            await work
        except Exception as exc:
            message = f"announcing to {sink} failed: {exc}"
            if message != self._last_error:
                log.warning("%s", message)
                self._last_error = message

    async def _write_row(self, payload: Announcement) -> None:
        assert self._sessionmaker is not None
        async with self._sessionmaker() as session, session.begin():
            await session.connection(execution_options={WRITE_INTENT: True})
            await session.merge(
                Worker(
                    id=payload.id,
                    url=payload.url,
                    grpc_url=payload.grpc_url,
                    loaded=[msgspec.structs.asdict(e) for e in payload.loaded],
                    state=payload.state,
                    in_flight=payload.in_flight,
                    queue_depth=payload.queue_depth,
                    capacity=payload.capacity,
                    device=payload.device,
                    started_at=payload.started_at,
                    last_seen=payload.last_seen,
                )
            )

    async def _write_redis(self, payload: Announcement) -> None:
        assert self._redis is not None
        await self._redis.set(self._keys.worker(self.worker_id), encode(payload), px=self._ttl_ms)
        await self._redis.publish(self._keys.workers_channel, self.worker_id)
