"""Outlier ejections shared by every gateway replica over Redis pub/sub.

An ejection decided here is published with its wall-clock end; the other replicas apply
it to their own balancers, so one replica's evidence protects the whole fleet. Redis down
means each replica ejects on its own evidence only (reported as degraded).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from gateway.balancer import Balancer, Ejection
from gateway.sync import Health

__all__ = ["EJECTION_CHANNEL", "SharedEjections"]

EJECTION_CHANNEL = "modelgate:ejections"


class SharedEjections:
    def __init__(self, balancer: Balancer, redis: Any, health: Health, *, origin: str) -> None:
        self.balancer = balancer
        self.redis = redis
        self.health = health
        self.origin = origin
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()

    def publish(self, ejection: Ejection) -> None:
        """The balancer's ``on_eject`` hook: tell the other replicas (fire and forget)."""
        remaining = ejection.until - time.monotonic()
        doc = {
            "origin": self.origin,
            "worker": ejection.worker_id,
            "until_epoch": time.time() + remaining,
            "count": ejection.count,
        }
        task = asyncio.get_running_loop().create_task(self._send(json.dumps(doc)))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _send(self, message: str) -> None:
        try:
            await self.redis.publish(EJECTION_CHANNEL, message)
        except Exception as exc:
            self.health.fail("redis", f"cannot share an ejection: {exc}")

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="ejections-listen")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _listen(self) -> None:
        backoff = 0.5
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(EJECTION_CHANNEL)
                    backoff = 0.5
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._apply(json.loads(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.health.fail("redis", f"ejection sharing lost: {exc}")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    def _apply(self, doc: dict[str, Any]) -> None:
        if doc.get("origin") == self.origin:
            return
        until = time.monotonic() + (float(doc["until_epoch"]) - time.time())
        if until > time.monotonic():
            self.balancer.apply_remote_ejection(str(doc["worker"]), until, int(doc["count"]))
