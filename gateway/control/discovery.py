"""Finds workers from their announcements (`modelgate.core.announce`): the SQL ``workers``
table and, with Redis, the announcement keys (TTL) and the workers channel.

A worker counts while its freshest announcement is younger than ``stale_s`` and says it
is serving; a draining worker keeps its entry but offers no version, so it gets no new
requests. What the sources say is merged into the last known announcements, never put in
their place: a worker leaves only when its own latest heartbeat, from whichever source,
ages past ``stale_s`` (or says it stopped). So a source that is down, or answers with an
incomplete view (Redis restarted empty, its workers not yet re-announced), drops no worker
that is still fresh by its last heartbeat. A failing source marks the gateway degraded; when
every source fails, the last installed set stays as it is (nothing to age it by but time,
and the probes still watch each worker).

External OIP servers registered by the admin API (the ``external_servers`` table) are read
with the database's poll and installed beside the announced workers, ``external`` and with
their remote names. They are configuration, not heartbeats: they never age out, they leave
when their registration is deleted, and a failed read keeps the last set read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
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
from registry.models import ExternalServer, Worker
from registry.servers import grpc_target

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
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.sessions = sessions
        self.on_workers = on_workers
        self.health = health
        self.redis = redis
        self.poll_s = poll_s
        self.stale_s = stale_s
        self.monotonic = monotonic
        #: The wall clock heartbeats are aged by (announcements carry wall-clock times).
        self.wall = wall
        self.keys = keys
        #: The live workers' latest announcements (what `announcements` returns).
        self._announced: dict[str, Announcement] = {}
        #: Every announcement not yet stale, stopped ones included (so an older "serving"
        #: copy in a lagging source cannot bring a stopped worker back): the merge base.
        self._known: dict[str, Announcement] = {}
        self._first_seen: dict[str, float] = {}
        self._published: dict[str, WorkerInfo] = {}
        #: The registered external servers as last read (``started_at`` not yet set).
        self._servers: dict[str, WorkerInfo] = {}
        #: Server ids a modelgate worker also announced itself under (warned once).
        self._servers_clashing: set[str] = set()
        self._wake = asyncio.Event()
        self._wake_redis = asyncio.Event()
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
        """Re-read every source and merge what they say into the last known announcements
        (the freshest per worker wins); when all of them fail, keep the last known set."""
        sources = ["database", *(["redis"] if self.redis is not None else [])]
        views = await asyncio.gather(*(self._read(source) for source in sources))
        self._install_views([view for view in views if view is not None])

    async def _refresh_one(self, source: str) -> None:
        view = await self._read(source)
        if view is not None:
            self._install_views([view])

    async def _read(self, source: str) -> dict[str, Announcement] | None:
        """What one source says now, or None when the read failed."""
        fresh: dict[str, Announcement] = {}
        if source == "database":
            read = await self._read_database(fresh)
        else:
            read = await self._read_redis(fresh)
        return fresh if read else None

    def _install_views(self, views: list[dict[str, Announcement]]) -> None:
        # NOTE: merged into the last known set only after the reads, with no await between,
        # so the per-source loops never install a copy of ``_known`` older than the other's.
        if not views:
            return
        merged = dict(self._known)
        for view in views:
            for doc in view.values():
                self._merge(merged, doc)
        self._install(merged)

    async def _read_database(self, into: dict[str, Announcement]) -> bool:
        try:
            async with self.sessions() as session:
                rows = (await session.execute(select(Worker))).scalars().all()
                servers = (await session.execute(select(ExternalServer))).scalars().all()
        except Exception as exc:
            self.health.fail("database", f"cannot read workers: {exc}", check="workers")
            return False
        self.health.ok("database", check="workers")
        self._servers = {row.id: _server_info(row) for row in servers}
        for row in rows:
            self._merge(into, _from_row(row))
        return True

    async def _read_redis(self, into: dict[str, Announcement]) -> bool:
        assert self.redis is not None
        try:
            keys = [key async for key in self.redis.scan_iter(match=self.keys.workers_pattern)]
            values = await self.redis.mget(keys) if keys else []
        except Exception as exc:
            self.health.fail("redis", f"cannot read worker announcements: {exc}", check="discovery")
            return False
        self.health.ok("redis", check="discovery")
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
        cutoff = self.wall() - timedelta(seconds=self.stale_s)
        live: dict[str, WorkerInfo] = {}
        now = self.monotonic()
        self._known = {k: doc for k, doc in announced.items() if doc.last_seen >= cutoff}
        for worker_id, doc in self._known.items():
            if doc.state == "stopped":
                continue
            first = self._first_seen.setdefault(worker_id, now)
            ready = doc.ready_versions()
            live[worker_id] = WorkerInfo(
                worker_id, doc.url, ready, first, doc.capacity, grpc_url=doc.grpc_url
            )
        for server_id, info in self._servers.items():
            if server_id in live and server_id not in self._servers_clashing:
                self._servers_clashing.add(server_id)
                log.warning(
                    "worker %s announced itself under the id of a registered external "
                    "server; routing to the registered server",
                    server_id,
                )
            first = self._first_seen.setdefault(server_id, now)
            live[server_id] = replace(info, started_at=first)
        self._servers_clashing &= set(self._servers)
        for gone in set(self._first_seen) - set(live):
            del self._first_seen[gone]
        self._announced = {
            k: v for k, v in announced.items() if k in live and k not in self._servers
        }
        if live != self._published:
            self._published = live
            self.on_workers(live)


def _from_row(row: Worker) -> Announcement:
    return Announcement(
        id=row.id,
        url=row.url,
        grpc_url=row.grpc_url,
        state=row.state,
        loaded=[LoadedEntry(e["model"], e["version"], bool(e.get("ready"))) for e in row.loaded],
        in_flight=row.in_flight,
        queue_depth=row.queue_depth,
        capacity=row.capacity,
        device=row.device,
        started_at=as_utc(row.started_at),
        last_seen=as_utc(row.last_seen),
    )


def _server_info(row: ExternalServer) -> WorkerInfo:
    """A registered server as the balancer sees it: ready for what it serves (until probes
    say otherwise), reached over REST or, for protocol ``grpc``, at its ``host:port``."""
    served = [
        (s["model"], s["version"], s["remote_model"], s["remote_version"]) for s in row.serves
    ]
    grpc = row.protocol == "grpc"
    return WorkerInfo(
        row.id,
        "" if grpc else row.url,
        frozenset((m, v) for m, v, _, _ in served),
        0.0,
        grpc_url=grpc_target(row.url) if grpc else None,
        remote={(m, v): (rm, rv) for m, v, rm, rv in served},
        external=True,
    )
