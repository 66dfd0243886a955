"""Keeps the gateway's registry snapshot current without touching the request path.

Three triggers, any of which reloads when the SQL revision has moved: the in-process bus
(an admin mutation in this process calls `poke`), Redis pub/sub on ``modelgate:registry``
(a mutation in another replica), and polling the revision every ``poll_s`` as the safety
net. A failed reload keeps the last snapshot and marks the source degraded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry.models import RegistryState
from registry.snapshot import RegistrySnapshot, load_snapshot

__all__ = ["REGISTRY_CHANNEL", "Health", "RegistrySync"]

log = logging.getLogger("modelgate.gateway.sync")
REGISTRY_CHANNEL = "modelgate:registry"


class Health:
    """Which outside dependencies are failing now; the gateway serves on, degraded."""

    def __init__(self) -> None:
        self.problems: dict[str, str] = {}

    def fail(self, source: str, message: str) -> None:
        if self.problems.get(source) != message:
            log.warning("%s degraded: %s", source, message)
        self.problems[source] = message

    def ok(self, source: str) -> None:
        if self.problems.pop(source, None) is not None:
            log.info("%s recovered", source)

    @property
    def degraded(self) -> bool:
        return bool(self.problems)


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
    ) -> None:
        self.sessions = sessions
        self.on_snapshot = on_snapshot
        self.health = health
        self.redis = redis
        self.poll_s = poll_s
        self.revision = -1
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def poke(self) -> None:
        """A mutation committed in this process: reload now (the in-process bus)."""
        self._wake.set()

    async def start(self) -> None:
        await self.refresh()
        self._tasks.append(asyncio.create_task(self._poll(), name="registry-poll"))
        if self.redis is not None:
            self._tasks.append(asyncio.create_task(self._listen(), name="registry-listen"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def refresh(self) -> bool:
        """Reload if the revision moved; returns whether a new snapshot was installed."""
        try:
            async with self.sessions() as session:
                revision = int(
                    await session.scalar(
                        select(RegistryState.revision).where(RegistryState.id == 1)
                    )
                    or 0
                )
            if revision == self.revision:
                self.health.ok("database")
                return False
            snapshot = await load_snapshot(self.sessions)
        except Exception as exc:
            self.health.fail("database", f"cannot read the registry: {exc}")
            return False
        self.health.ok("database")
        self.revision = snapshot.revision
        self.on_snapshot(snapshot)
        if self.redis is not None:
            try:
                await self.redis.publish(REGISTRY_CHANNEL, str(snapshot.revision))
            except Exception as exc:
                self.health.fail("redis", f"cannot publish the revision: {exc}")
        return True

    async def _poll(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            self._wake.clear()
            await self.refresh()

    async def _listen(self) -> None:
        assert self.redis is not None
        backoff = 0.5
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(REGISTRY_CHANNEL)
                    self.health.ok("redis")
                    backoff = 0.5
                    async for message in pubsub.listen():
                        if message.get("type") != "message":
                            continue
                        if int(message["data"]) != self.revision:
                            self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.health.fail("redis", f"registry notifications lost: {exc}")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
