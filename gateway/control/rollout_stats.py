"""Per-attempt outcome counters per (model, version), in 1-second slots, for rollout gates.

The data plane calls `OutcomeCounters.record` once per forwarded attempt: a dict lookup and
a few integer increments, no I/O. Each slot holds the attempt count, the errors (5xx
answers, connect failures, resets, timeouts; never 4xx) and a fixed-bucket latency
histogram. `OutcomeCounters.window` sums the slots of ``[since, until]`` into `WindowStats`
(requests, errors, error rate, p99).

Without Redis the slots live in this process. With Redis, `OutcomeCounters.flush` (every
~0.5 s in the background after `start`) moves the increments since the last flush into one
hash per slot (``HINCRBY``, with a TTL), so `window` sums every replica's attempts. Slots are
keyed by wall-clock seconds (not the monotonic clock) because a window's bounds come from SQL
timestamps and span replicas.

NOTE: the histogram's buckets grow by 2^(1/4) (about 19%) from 0.1 ms to about 100 s, so a
p99 read from it is within one bucket, ~19%, of the exact value: fine for a ratio gate
of 2x and for absolute bounds, and a fixed set of fields per hash.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from gateway.control.background import Tasks
from gateway.control.health import Health
from modelgate.core.keys import DEFAULT_KEYS, RedisKeys

__all__ = ["EDGES_MS", "OutcomeCounters", "WindowStats", "p99_ms"]

log = logging.getLogger("modelgate.gateway.rollouts")

#: Upper bounds of the latency buckets, in ms; one more bucket holds everything above.
EDGES_MS: tuple[float, ...] = tuple(0.1 * 2 ** (i / 4) for i in range(81))
_COUNT, _ERRORS, _BUCKET0 = 0, 1, 2
_WIDTH = _BUCKET0 + len(EDGES_MS) + 1
#: Redis hash fields: ``n`` attempts, ``e`` errors, ``b<i>`` bucket i.
_FIELDS = ("n", "e", *(f"b{i}" for i in range(len(EDGES_MS) + 1)))

Cell = list[int]
SlotKey = tuple[str, str, int]


@dataclass(frozen=True, slots=True)
class WindowStats:
    """One version's attempts over a window, as the gates and the history show them."""

    requests: int
    errors: int
    p99_ms: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The judgement's figures: ``{requests, errors, error_rate, p99_ms}``."""
        p99 = None if self.p99_ms is None else round(self.p99_ms, 3)
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 6),
            "p99_ms": p99,
        }


def p99_ms(buckets: Iterable[int], quantile: float = 0.99) -> float | None:
    """The ``quantile`` of a histogram (counts per bucket of `EDGES_MS`, then overflow),
    interpolated linearly inside its bucket; None for an empty histogram. A quantile in the
    overflow bucket reads as the last edge (a lower bound)."""
    counts = list(buckets)
    total = sum(counts)
    if total == 0:
        return None
    rank = quantile * total
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            if index >= len(EDGES_MS):
                return EDGES_MS[-1]
            lower = EDGES_MS[index - 1] if index > 0 else 0.0
            return lower + (EDGES_MS[index] - lower) * (rank - seen) / count
        seen += count
    return EDGES_MS[-1]


def _add(into: Cell, cell: Iterable[int]) -> None:
    for index, value in enumerate(cell):
        into[index] += value


class OutcomeCounters:
    """The counters of this replica, and the window sums over all replicas (through Redis
    when ``redis`` is given). ``retention_s`` bounds how far back a window can see: the TTL
    of the Redis hashes, and how long in-process slots are kept."""

    def __init__(
        self,
        *,
        redis: Any | None = None,
        health: Health | None = None,
        keys: RedisKeys = DEFAULT_KEYS,
        retention_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.health = health or Health()
        self.keys = keys
        self.retention_s = retention_s
        self.clock = clock
        #: In-process mode: every kept slot. Redis mode: increments not flushed yet.
        self._slots: dict[SlotKey, Cell] = {}
        self._pruned_at = 0
        self._tasks = Tasks()

    def record(self, model: str, version: str, error: bool, latency_s: float) -> None:
        """Count one attempt (the data plane's hot path: no I/O, no allocation but the
        first attempt of a slot)."""
        key = (model, version, int(self.clock()))
        cell = self._slots.get(key)
        if cell is None:
            cell = self._slots[key] = [0] * _WIDTH
            self._prune(key[2])
        cell[_COUNT] += 1
        if error:
            cell[_ERRORS] += 1
        cell[_BUCKET0 + bisect.bisect_left(EDGES_MS, latency_s * 1000.0)] += 1

    def _prune(self, now: int) -> None:
        """Drop slots older than the retention, at most once a minute (in-process mode;
        in Redis mode `flush` empties the dict and Redis expires the hashes)."""
        if now - self._pruned_at < 60:
            return
        self._pruned_at = now
        oldest = now - self.retention_s
        for key in [k for k in self._slots if k[2] < oldest]:
            del self._slots[key]

    async def window(self, model: str, version: str, since: float, until: float) -> WindowStats:
        """Attempts of ``model@version`` in the slots from ``since`` to ``until`` (epoch
        seconds, both slots included; no further back than the retention), summed over every
        replica in Redis mode (where the last < 0.5 s of each replica may not be flushed
        yet). Raises whatever Redis raises."""
        first, last = int(max(since, until - self.retention_s)), int(until)
        total = [0] * _WIDTH
        if self.redis is None:
            for slot in range(first, last + 1):
                cell = self._slots.get((model, version, slot))
                if cell is not None:
                    _add(total, cell)
        else:
            async with self.redis.pipeline(transaction=False) as pipe:
                for slot in range(first, last + 1):
                    pipe.hmget(self.keys.rollout_stats(model, version, slot), _FIELDS)
                rows = await pipe.execute()
            for row in rows:
                _add(total, (int(v) if v is not None else 0 for v in row))
        return WindowStats(total[_COUNT], total[_ERRORS], p99_ms(total[_BUCKET0:]))

    async def flush(self) -> None:
        """Redis mode: add the increments since the last flush to the shared hashes. After a
        failure they are kept and sent with the next flush (slots past the retention are
        dropped), and Redis is reported degraded."""
        if self.redis is None or not self._slots:
            return
        pending, self._slots = self._slots, {}
        ttl = max(1, int(self.retention_s))
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for (model, version, slot), cell in pending.items():
                    key = self.keys.rollout_stats(model, version, slot)
                    for name, value in zip(_FIELDS, cell, strict=True):
                        if value:
                            pipe.hincrby(key, name, value)
                    pipe.expire(key, ttl)
                await pipe.execute()
            self.health.ok("redis", check="rollout-counters-push")
        except asyncio.CancelledError:
            self._merge(pending)
            raise
        except Exception as exc:
            self._merge(pending)
            self.health.fail(
                "redis", f"rollout counters not shared: {exc}", check="rollout-counters-push"
            )

    def _merge(self, pending: dict[SlotKey, Cell]) -> None:
        oldest = self.clock() - self.retention_s
        for key, cell in pending.items():
            if key[2] < oldest:
                continue
            mine = self._slots.get(key)
            if mine is None:
                self._slots[key] = cell
            else:
                _add(mine, cell)

    async def start(self, flush_s: float) -> None:
        """Redis mode: flush every ``flush_s`` in the background until `stop`."""
        if self.redis is not None:
            self._tasks.spawn(self._run(flush_s), "rollout-stats-flush")

    async def stop(self) -> None:
        """Stop flushing, after one last flush of what this replica counted."""
        await self._tasks.stop()
        await self.flush()

    async def _run(self, flush_s: float) -> None:
        while True:
            await asyncio.sleep(flush_s)
            await self.flush()
