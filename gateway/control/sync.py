"""Keeps the gateway's registry snapshot current without touching the request path.

Three triggers, any of which reloads when the SQL revision has moved: the in-process bus
(an admin mutation in this process calls `poke`), Redis pub/sub on the registry
channel (a mutation in another replica), and polling the revision every ``poll_s`` as the safety
net. A failed reload keeps the last snapshot and marks the source degraded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.control.background import Tasks, follow_channel, poll
from gateway.control.health import Health
from modelgate.core.keys import DEFAULT_KEYS, RedisKeys
from registry.db import unavailable
from registry.models import RegistryState
from registry.snapshot import RegistrySnapshot, load_snapshot

__all__ = ["RegistrySync"]

log = logging.getLogger("modelgate.gateway.sync")


class RegistrySync:
    """Loads the first snapshot, then swaps in a new one whenever the revision moves."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        on_snapshot: Callable[[RegistrySnapshot], None],
        health: Health,
        *,
        redis: Any | None = None,
        poll_s: float = 2.0,
        keys: RedisKeys = DEFAULT_KEYS,
    ) -> None:
        self.sessions = sessions
        self.on_snapshot = on_snapshot
        self.health = health
        self.redis = redis
        self.poll_s = poll_s
        self.keys = keys
        self.revision = -1
        self._wake = asyncio.Event()
        self._tasks = Tasks()

    def poke(self) -> None:
        """A mutation committed in this process: reload now (the in-process bus)."""
        self._wake.set()

    async def start(self) -> None:
        await self.refresh()
        self._tasks.spawn(poll(self._wake, self.poll_s, self.refresh), "registry-poll")
        if self.redis is not None:
            follow = follow_channel(
                self.redis,
                self.keys.registry_channel,
                self._notified,
                self.health,
                "registry notifications lost",
            )
            self._tasks.spawn(follow, "registry-listen")

    async def stop(self) -> None:
        await self._tasks.stop()

    def _notified(self, data: Any) -> None:
        if int(data) != self.revision:
            self._wake.set()

    async def refresh(self) -> bool:
        """Reload if the revision moved; returns whether a new snapshot was installed."""
        try:
            with unavailable(self.sessions.kw["bind"].url):
                async with self.sessions() as session:
                    revision = int(
                        await session.scalar(
                            select(RegistryState.revision).where(RegistryState.id == 1)
                        )
                        or 0
                    )
                if revision == self.revision:
                    self.health.ok("database", check="registry")
                    return False
                snapshot = await load_snapshot(self.sessions)
        except Exception as exc:
            # NOTE: an un-migrated schema says so (DatabaseUnavailable names the fix); the
            # last snapshot, if any, keeps serving, and a gateway without one answers 503.
            self.health.fail("database", f"cannot read the registry: {exc}", check="registry")
            return False
        self.health.ok("database", check="registry")
        previous, self.revision = self.revision, snapshot.revision
        self.on_snapshot(snapshot)
        log.info(
            "routing by registry revision %d",
            snapshot.revision,
            extra={
                "event": "registry.applied",
                "revision": snapshot.revision,
                "previous": previous,
                "models": len(snapshot.models),
            },
        )
        if self.redis is not None:
            try:
                await self.redis.publish(self.keys.registry_channel, str(snapshot.revision))
            except Exception as exc:
                self.health.fail("redis", f"cannot publish the revision: {exc}", check="publish")
            else:
                self.health.ok("redis", check="publish")
        return True
