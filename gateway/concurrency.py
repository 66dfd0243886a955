"""Per-model concurrency: a limit on requests forwarded at once, with a bounded wait queue;
beyond both, a 429 at once (`Overloaded`)."""

from __future__ import annotations

import asyncio

from gateway.errors import Overloaded

__all__ = ["ModelGate", "ModelGates"]


class ModelGate:
    """One model's limit and queue."""

    def __init__(self, limit: int, queue: int) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._queue = queue
        self.waiting = 0

    async def acquire(self, model: str) -> None:
        if self._slots.locked():
            if self.waiting >= self._queue:
                raise Overloaded(
                    f'model "{model}" is at its concurrency limit and queue; retry later'
                )
            self.waiting += 1
            try:
                await self._slots.acquire()
            finally:
                self.waiting -= 1
        else:
            await self._slots.acquire()

    def release(self) -> None:
        self._slots.release()


class ModelGates:
    """A `ModelGate` per model, made on first use with the same limit and queue."""

    def __init__(self, limit: int, queue: int) -> None:
        self.limit = limit
        self.queue = queue
        self._gates: dict[str, ModelGate] = {}

    def __getitem__(self, model: str) -> ModelGate:
        gate = self._gates.get(model)
        if gate is None:
            gate = self._gates[model] = ModelGate(self.limit, self.queue)
        return gate
