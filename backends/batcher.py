"""Dynamic batching for one loaded model version.

Requests queue in arrival order. One executor thread runs the model; whenever it is free,
the batcher takes the oldest request and every queued request with the same trailing
shapes, up to ``max_batch_size`` rows, concatenates them along dimension 0, runs them once
and hands each request exactly its own rows back. With ``max_queue_delay_us`` > 0 it waits
up to that long (counted from the oldest request's arrival) for a batch to fill.
Requests that cannot share a batch (the model has no variable first dimension, the
request alone exceeds the maximum, inputs disagree on their first dimension) run alone.
``max_batch_size`` 1 turns batching off; the queue and its bound still apply.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backends.errors import BackendError, InferenceFailed, QueueFull
from backends.observe import batch_span

__all__ = ["BatchPolicy", "BatchResult", "Batcher", "RunFn"]

log = logging.getLogger("modelgate.worker.batcher")

RunFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
BatchKey = tuple[tuple[str, tuple[int, ...], str], ...]


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """``max_batch_size`` in rows; ``max_queue_size`` in requests waiting (not yet running)."""

    max_batch_size: int = 32
    max_queue_delay_us: int = 0
    max_queue_size: int = 512

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or self.max_queue_size < 1 or self.max_queue_delay_us < 0:
            raise ValueError(f"invalid batch policy {self}")


@dataclass(frozen=True, slots=True)
class BatchResult:
    """One request's outputs, with how long it queued and how long its batch computed.

    ``inferences`` and ``batch_size`` count as Triton does: rows when the request ran
    batched (its own rows, and its batch's), 1 when batching is off.
    """

    outputs: dict[str, np.ndarray]
    queue_s: float
    compute_s: float
    batch_size: int
    inferences: int = 1


@dataclass(slots=True, eq=False)
class _Item:
    inputs: dict[str, np.ndarray]
    rows: int
    key: BatchKey | None
    enqueued: float
    future: asyncio.Future[BatchResult] = field(repr=False)
    #: The request's span while tracing is on.
    span: Any = field(default=None, repr=False)


class _NotBatchAligned(Exception):
    """An output's first dimension did not follow the batch: the model cannot be batched."""


class Batcher:
    """Queue, batch and run requests for one model version on one executor thread."""

    def __init__(
        self,
        run: RunFn,
        policy: BatchPolicy,
        *,
        model: str,
        version: str,
        batchable: bool,
        on_batch: Callable[[int, float], None] | None = None,  # (batch size, seconds)
        clock: Callable[[], float] = time.perf_counter,
        tracer: Any = None,
    ) -> None:
        self._run = run
        self.policy = policy
        self.model = model
        self.version = version
        self.batchable = batchable and policy.max_batch_size > 1
        self._on_batch = on_batch
        self._clock = clock
        #: A span per batch (`backends.observe.batch_span`) while tracing is on.
        self._tracer = tracer
        self._pending: deque[_Item] = deque()
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"infer-{model}-{version}")
        self.running = 0

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._loop(), name=f"batcher {self.model} {self.version}"
            )

    async def close(self) -> None:
        """Finish every queued request, then stop the loop and the executor thread."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=False)

    def _key(self, inputs: dict[str, np.ndarray]) -> tuple[int, BatchKey | None]:
        firsts = {a.shape[0] if a.ndim else -1 for a in inputs.values()}
        rows = firsts.pop() if len(firsts) == 1 else -1
        if not self.batchable or rows < 1 or rows > self.policy.max_batch_size:
            return max(rows, 1), None
        key = tuple(sorted((n, a.shape[1:], a.dtype.str) for n, a in inputs.items()))
        return rows, key

    async def submit(self, inputs: dict[str, np.ndarray], span: Any = None) -> BatchResult:
        """Queue a request and wait for its outputs (``span``: the request's, for the
        batch's span to link to). Raises ``QueueFull`` at the bound."""
        if self._closing or len(self._pending) >= self.policy.max_queue_size:
            raise QueueFull(self.model, self.version, self.policy.max_queue_size)
        rows, key = self._key(inputs)
        future: asyncio.Future[BatchResult] = asyncio.get_running_loop().create_future()
        self._pending.append(_Item(inputs, rows, key, self._clock(), future, span))
        self._wakeup.set()
        return await future

    async def _loop(self) -> None:
        while True:
            while not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
            first = self._pending[0]
            if first.key is not None and self.policy.max_queue_delay_us > 0:
                await self._fill(first)
            batch = self._take(first)
            if batch:
                await self._execute(batch)

    async def _fill(self, first: _Item) -> None:
        """Wait for more requests like ``first`` until the batch is full or the delay ends."""
        deadline = first.enqueued + self.policy.max_queue_delay_us / 1e6
        while not self._closing and self._rows_like(first) < self.policy.max_batch_size:
            remaining = deadline - self._clock()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                # NOTE: not wait_for, which can swallow a cancellation on 3.11 (gh-86296).
                async with asyncio.timeout(remaining):
                    await self._wakeup.wait()
            except TimeoutError:
                return

    def _rows_like(self, first: _Item) -> int:
        return sum(item.rows for item in self._pending if item.key == first.key)

    def _take(self, first: _Item) -> list[_Item]:
        if first.key is None or not self.batchable:
            self._pending.popleft()
            return [] if first.future.done() else [first]
        batch: list[_Item] = []
        rest: deque[_Item] = deque()
        rows = 0
        limit = self.policy.max_batch_size
        while self._pending:
            item = self._pending.popleft()
            if item.future.done():
                continue
            if rows < limit and item.key == first.key and rows + item.rows <= limit:
                batch.append(item)
                rows += item.rows
            else:
                rest.append(item)
        rest.extend(self._pending)
        self._pending = rest
        return batch

    async def _execute(self, batch: list[_Item]) -> None:
        loop = asyncio.get_running_loop()
        start = self._clock()
        self.running = len(batch)
        span = None
        if self._tracer is not None:
            rows = sum(item.rows for item in batch)
            spans = [item.span for item in batch]
            span = batch_span(self._tracer, spans, rows, self.model, self.version)
        try:
            if len(batch) == 1:
                outputs = [await loop.run_in_executor(self._executor, self._run, batch[0].inputs)]
            else:
                outputs = await loop.run_in_executor(self._executor, self._run_batch, batch)
        except (_NotBatchAligned, BackendError) as exc:
            if len(batch) == 1:
                self._fail(batch, exc)
            else:
                self._run_alone(batch, exc)
            return
        except Exception as exc:
            log.exception("batch of %d for %s %s failed", len(batch), self.model, self.version)
            self._fail(batch, InferenceFailed(f"inference failed: {exc}"))
            return
        finally:
            self.running = 0
            if span is not None:
                span.end()
        compute = self._clock() - start
        batched = self.batchable
        rows = sum(item.rows for item in batch) if batched else 1
        if self._on_batch is not None:
            self._on_batch(rows, compute)
        for item, result in zip(batch, outputs, strict=True):
            if not item.future.done():
                queued = start - item.enqueued
                own = item.rows if batched else 1
                item.future.set_result(BatchResult(result, queued, compute, rows, own))

    def _run_batch(self, batch: list[_Item]) -> list[dict[str, np.ndarray]]:
        """Concatenate, run once, split back; runs on the executor thread."""
        names = batch[0].inputs.keys()
        merged = {n: np.concatenate([item.inputs[n] for item in batch]) for n in names}
        total = sum(item.rows for item in batch)
        outputs = self._run(merged)
        for name, array in outputs.items():
            if array.ndim == 0 or array.shape[0] != total:
                raise _NotBatchAligned(name)
        results: list[dict[str, np.ndarray]] = []
        offset = 0
        for item in batch:
            end = offset + item.rows
            results.append({n: a[offset:end] for n, a in outputs.items()})
            offset = end
        return results

    def _run_alone(self, batch: list[_Item], exc: Exception) -> None:
        """Requeue a failed batch's requests at the front to run one by one.

        A misaligned output disables batching for good; any other failure is retried per
        request so that each gets its own result or its own error.
        """
        if isinstance(exc, _NotBatchAligned):
            log.warning(
                "%s %s: output %s does not follow the batch size; batching disabled",
                self.model,
                self.version,
                exc,
            )
            self.batchable = False
        for item in reversed(batch):
            item.key = None
            self._pending.appendleft(item)

    @staticmethod
    def _fail(batch: list[_Item], exc: BaseException) -> None:
        for item in batch:
            if not item.future.done():
                item.future.set_exception(exc)

    def snapshot(self) -> dict[str, Any]:
        return {"queue_depth": self.queue_depth, "running": self.running}
