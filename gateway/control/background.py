"""The gateway's background loops: polling on a timer or a wake-up, and Redis channels
followed across disconnects. None of it is on the request path."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from gateway.control.health import Health

__all__ = ["Tasks", "follow_channel", "poll"]


class Tasks:
    """Named background tasks, all cancelled and awaited by `stop`."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.append(asyncio.create_task(work, name=name))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()


async def poll(wake: asyncio.Event, interval_s: float, work: Callable[[], Awaitable[Any]]) -> None:
    """Run ``work`` every ``interval_s``, or at once when ``wake`` is set."""
    # NOTE: asyncio.timeout, not wait_for: on Python 3.11 wait_for returns the result when a
    # cancellation meets a wake that has just been set (gh-86296), so the loop ran on and
    # stop() waited for it forever (seen as a hung shutdown after a commit's poke).
    while True:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval_s):
                await wake.wait()
        wake.clear()
        await work()


async def follow_channel(
    redis: Any, channel: str, on_message: Callable[[Any], None], health: Health, what: str
) -> None:
    """Call ``on_message(data)`` for each message on ``channel``, resubscribing with backoff
    after any failure (reported as Redis degraded: ``what`` says what is lost meanwhile)."""
    backoff = 0.5
    while True:
        try:
            async with redis.pubsub() as pubsub:
                await pubsub.subscribe(channel)
                health.ok("redis", check=f"follow:{channel}")
                backoff = 0.5
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        on_message(message["data"])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            health.fail("redis", f"{what}: {exc}", check=f"follow:{channel}")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
