"""Outlier ejections shared by every gateway replica over Redis pub/sub.

An ejection decided here is published with its wall-clock end, its multiplier and its
reason (``consecutive_failures``, ``failure_percentage``); the other replicas apply it to
their own balancers, so one replica's evidence protects the whole fleet. Redis down
means each replica ejects on its own evidence only (reported as degraded).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from gateway.balancing.balancer import Balancer, Ejection
from gateway.balancing.outliers import REMOTE
from gateway.control.background import Tasks, follow_channel
from gateway.control.health import Health
from modelgate.core.keys import DEFAULT_KEYS, RedisKeys

__all__ = ["SharedEjections"]


class SharedEjections:
    def __init__(
        self,
        balancer: Balancer,
        redis: Any,
        health: Health,
        *,
        origin: str,
        keys: RedisKeys = DEFAULT_KEYS,
    ) -> None:
        self.balancer = balancer
        self.redis = redis
        self.health = health
        self.origin = origin
        self.keys = keys
        self._tasks = Tasks()
        self._pending: set[asyncio.Task[None]] = set()

    def publish(self, ejection: Ejection) -> None:
        """The balancer's ``on_eject`` hook: tell the other replicas (fire and forget)."""
        remaining = ejection.until - time.monotonic()
        doc = {
            "origin": self.origin,
            "worker": ejection.worker_id,
            "until_epoch": time.time() + remaining,
            "count": ejection.count,
            "reason": ejection.reason,
        }
        task = asyncio.get_running_loop().create_task(self._send(json.dumps(doc)))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _send(self, message: str) -> None:
        try:
            await self.redis.publish(self.keys.ejections_channel, message)
        except Exception as exc:
            self.health.fail("redis", f"cannot share an ejection: {exc}", check="share-ejection")
        else:
            self.health.ok("redis", check="share-ejection")

    async def start(self) -> None:
        follow = follow_channel(
            self.redis,
            self.keys.ejections_channel,
            lambda data: self._apply(json.loads(data)),
            self.health,
            "ejection sharing lost",
        )
        self._tasks.spawn(follow, "ejections-listen")

    async def flush(self) -> None:
        """Wait until every ejection published so far has been sent (or failed to be)."""
        await asyncio.gather(*self._pending)

    async def stop(self) -> None:
        await self.flush()
        await self._tasks.stop()

    def _apply(self, doc: dict[str, Any]) -> None:
        if doc.get("origin") == self.origin:
            return
        # NOTE: the balancer ignores an ``until`` already past, and one already in force.
        until = time.monotonic() + (float(doc["until_epoch"]) - time.time())
        # NOTE: a message from a replica that predates ``reason`` names none.
        self.balancer.apply_remote_ejection(
            str(doc["worker"]), until, int(doc["count"]), reason=str(doc.get("reason", REMOTE))
        )
