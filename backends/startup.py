"""Start-up loads: the versions a worker is told to serve, loaded in order.

With a wait (`LoadWait.timeout_s` > 0), a version that is not published yet, and a
registry that cannot be reached or is not migrated yet, are retried with capped
exponential backoff, each try logged, instead of failing the start: a worker started
beside a fresh registry (``docker compose up``, a Kubernetes rollout racing the migration
Job) comes up once its version is published. Anything else (a yanked version, a corrupt
artifact, a model that does not load) fails at once: waiting would not mend it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from registry.errors import DatabaseUnavailable, ModelNotFound, VersionNotFound

if TYPE_CHECKING:
    from backends.dataplane import DataPlane, LoadedVersion

__all__ = ["LoadWait", "VersionYanked", "load_waiting", "waitable"]

log = logging.getLogger("modelgate.worker")


class VersionYanked(VersionNotFound):
    """The version exists and is yanked: no wait makes it loadable."""

    def __init__(self, model: str, version: str) -> None:
        super().__init__(model, version, "is yanked and cannot be loaded")


@dataclass(frozen=True)
class LoadWait:
    """How long a start-up load waits for its version: ``timeout_s`` in all (0: not at
    all, the first failure is final), the pause doubling from ``initial_s`` up to
    ``max_delay_s`` between tries."""

    timeout_s: float = 0.0
    initial_s: float = 0.5
    max_delay_s: float = 30.0

    def delays(self) -> Iterator[float]:
        """The pauses between tries: ``initial_s``, doubled each time, capped."""
        delay = self.initial_s
        while True:
            yield min(delay, self.max_delay_s)
            delay = min(delay * 2, self.max_delay_s)


def waitable(exc: BaseException) -> bool:
    """Whether ``exc`` may go away by itself: the model or version is not published yet,
    or the registry's database cannot be reached or is not migrated yet."""
    if isinstance(exc, VersionYanked):
        return False
    return isinstance(exc, ModelNotFound | VersionNotFound | DatabaseUnavailable)


async def load_waiting(
    plane: DataPlane,
    model: str,
    version: str,
    wait: LoadWait,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> LoadedVersion:
    """``plane.load(model, version)``, retried per ``wait`` while the failure is
    `waitable`; the last failure is raised when the wait is over."""
    deadline = clock() + wait.timeout_s
    for attempt, delay in enumerate(wait.delays(), start=1):
        try:
            return await plane.load(model, version)
        except Exception as exc:
            left = deadline - clock()
            if not waitable(exc) or left <= 0:
                if attempt > 1:
                    log.error(
                        "gave up waiting for %s@%s after %d tries over %.0fs",
                        model, version, attempt, wait.timeout_s,
                    )  # fmt: skip
                raise
            pause = min(delay, left)
            log.warning(
                "waiting for %s@%s (try %d failed: %s); next try in %.1fs, giving up in %.0fs",
                model, version, attempt, exc, pause, left,
            )  # fmt: skip
            await sleep(pause)
    raise AssertionError("unreachable: LoadWait.delays() never ends")
