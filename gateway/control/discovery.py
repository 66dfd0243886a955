"""Finds workers from their announcements (`modelgate.core.announce`): the SQL ``workers``
table and, with Redis, the announcement keys (TTL) and the workers channel.

A worker counts while its freshest announcement is younger than ``stale_s`` and says it
is serving; a draining worker keeps its entry but offers no version, so it gets no new
requests. A failing source keeps the last known workers and marks the gateway degraded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.balancing.balancer import WorkerInfo
from gateway.control.background import Tasks, follow_channel, poll
from gateway.control.health import Health
from modelgate.core.announce import Announcement, LoadedEntry, decode
from modelgate.core.keys import DEFAULT_KEYS, RedisKeys
from registry._base import as_utc
from registry.models import Worker

__all__ = ["WorkerDirectory"]

log = logging.getLogger("modelgate.gateway.discovery")


class WorkerDirectory:
    """Merges announcements from every source and hands the live set to ``on_workers``."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        on_workers: Callable[[Mapping[str, WorkerInfo]], None],
        health: Health,
        *,
        redis: Any | None = None,
        poll_s: float = 1.0,
        stale_s: float = 10.0,
        keys: RedisKeys = DEFAULT_KEYS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessions = sessions
        self.on_workers = on_workers
        self.health = health
        self.redis = redis
        self.poll_s = poll_s
        self.stale_s = stale_s
        self.monotonic = monotonic
        self.keys = keys
        self._announced: dict[str, Announcement] = {}
        self._first_seen: dict[str, float] = {}
        self._published: dict[str, WorkerInfo] = {}
        self._wake = asyncio.Event()
        self._wake_redis = asyncio.Event()
        #: The last read of each source (None: it failed).
        self._views: dict[str, dict[str, Announcement] | None] = {}
        self._tasks = Tasks()

    @property
    def announcements(self) -> dict[str, Announcement]:
        return dict(self._announced)

    async def start(self) -> None:
        await self.refresh()
        # NOTE: one loop per source, so that a hung database (reads end at its statement
        # timeout) never delays what Redis says, nor the other way round.
        self._tasks.spawn(
            poll(self._wake, self.poll_s, lambda: self._refresh_one("database")),
            "workers-poll-database",
        )
        if self.redis is not None:
            self._tasks.spawn(
                poll(self._wake_redis, self.poll_s, lambda: self._refresh_one("redis")),
                "workers-poll-redis",
            )
            follow = follow_channel(
                self.redis,
                self.keys.workers_channel,
                self._notified,
                self.health,
                "worker notifications lost",
            )
            self._tasks.spawn(follow, "workers-listen")

    async def stop(self) -> None:
        await self._tasks.stop()

    def _notified(self, _: Any) -> None:
        self._wake.set()
        self._wake_redis.set()

    async def refresh(self) -> None:
        """Re-read every source; when all of them fail, keep serving the last known set."""
        sources = ["database", *(["redis"] if self.redis is not None else [])]
        await asyncio.gather(*(self._read(source) for source in sources))
        self._install_views()

    async def _refresh_one(self, source: str) -> None:
        await self._read(source)
        self._install_views()

    async def _read(self, source: str) -> None:
        """Read one source; its view is what it said, or None when the read failed."""
        fresh: dict[str, Announcement] = {}
        if source == "database":
            read = await self._read_database(fresh)
        else:
            read = await self._read_redis(fresh)
        self._views[source] = fresh if read else None

    def _install_views(self) -> None:
        views = [view for view in self._views.values() if view is not None]
        if not views:
            return
        merged: dict[str, Announcement] = {}
        for view in views:
            for doc in view.values():
                self._merge(merged, doc)
        self._install(merged)

    async def _read_database(self, into: dict[str, Announcement]) -> bool:
        try:
            async with self.sessions() as session:
                rows = (await session.execute(select(Worker))).scalars().all()
        except Exception as exc:
            self.health.fail("database", f"cannot read workers: {exc}", check="workers")
            return False
        self.health.ok("database", check="workers")
        for row in rows:
            self._merge(into, _from_row(row))
        return True

    async def _read_redis(self, into: dict[str, Announcement]) -> bool:
        assert self.redis is not None
        try:
            keys = [key async for key in self.redis.scan_iter(match=self.keys.workers_pattern)]
            values = await self.redis.mget(keys) if keys else []
        except Exception as exc:
            self.health.fail("redis", f"cannot read worker announcements: {exc}")
            return False
        self.health.ok("redis")
        for value in values:
            if value is None:
                continue
            try:
                self._merge(into, decode(value))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                log.warning("ignoring a malformed worker announcement: %s", exc)
        return True

    def _merge(self, into: dict[str, Announcement], doc: Announcement) -> None:
        current = into.get(doc.id)
        if current is None or doc.last_seen > current.last_seen:
            into[doc.id] = doc

    def _install(self, announced: dict[str, Announcement]) -> None:
        cutoff = datetime.now(UTC) - timedelta(seconds=self.stale_s)
        live: dict[str, WorkerInfo] = {}
        now = self.monotonic()
        for worker_id, doc in announced.items():
            if doc.last_seen < cutoff or doc.state == "stopped":
                continue
            first = self._first_seen.setdefault(worker_id, now)
            ready = doc.ready_versions()
            live[worker_id] = WorkerInfo(worker_id, doc.url, ready, first, doc.capacity)
        for gone in set(self._first_seen) - set(live):
            del self._first_seen[gone]
        self._announced = {k: v for k, v in announced.items() if k in live}
        if live != self._published:
            self._published = live
            self.on_workers(live)


def _from_row(row: Worker) -> Announcement:
    return Announcement(
        id=row.id,
        url=row.url,
        state=row.state,
        loaded=[LoadedEntry(e["model"], e["version"], bool(e.get("ready"))) for e in row.loaded],
        in_flight=row.in_flight,
        queue_depth=row.queue_depth,
        capacity=row.capacity,
        device=row.device,
        started_at=as_utc(row.started_at),
        last_seen=as_utc(row.last_seen),
    )
