"""Passive outlier ejection with Envoy's bounds, and the record of each ejection.

Semantics follow Envoy's outlier detection (``consecutive_5xx``, ``base_ejection_time``,
``max_ejection_time``, ``max_ejection_percent``): a worker that fails
``consecutive_failures`` times in a row is ejected for ``base_ejection_s`` * the number of
times it has been ejected, capped at ``max_ejection_s``, and never more than
``max_ejected_fraction`` of the workers are out at once. An ejected worker comes back by
itself when its time is up (or early, on a probe's word) and then ramps up in slow start.

Beside the streak, Envoy's ``failure_percentage``: a worker with at least
``failure_percentage_min_requests`` requests over the last ``failure_percentage_interval_s``
and at least ``failure_percentage_threshold`` percent of them failed is ejected the same
way (same cap, same multiplier). It catches a worker that fails often but never five times
in a row. NOTE: Envoy evaluates every ``interval`` on a timer; here the window slides (in
quarters of the interval) and is judged at each failure, so a bad worker is out within
about one interval of going bad, with no timer and no clock read beyond the caller's.

Pure logic on the balancer's worker records; time is passed in by the caller.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Collection, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

log = logging.getLogger("modelgate.gateway.balancer")

__all__ = [
    "CONSECUTIVE_FAILURES",
    "FAILURE_PERCENTAGE",
    "REMOTE",
    "Ejectable",
    "Ejection",
    "EjectionRules",
    "Ejector",
]

#: ``Ejection.reason`` of an ejection this replica decided from a streak of failures.
CONSECUTIVE_FAILURES = "consecutive_failures"
#: ``Ejection.reason`` of an ejection this replica decided from a failure rate.
FAILURE_PERCENTAGE = "failure_percentage"
#: ``Ejection.reason`` of an ejection applied from another replica when it names none.
REMOTE = "remote"


@dataclass(frozen=True, slots=True)
class Ejection:
    """One ejection: ``worker_id`` gets no traffic (outside panic mode) until ``until``.

    ``at`` and ``until`` are seconds on the balancer's monotonic clock, meaningless on
    another machine: to share an ejection, publish ``duration_s`` (or a wall-clock deadline)
    and let the receiver add it to its own clock. ``count`` is the ejection multiplier used
    (1 for a first ejection). ``remote`` is true when another replica decided it.
    """

    worker_id: str
    reason: str
    at: float
    until: float
    count: int
    remote: bool = False

    @property
    def duration_s(self) -> float:
        return self.until - self.at


@dataclass(frozen=True, slots=True)
class EjectionRules:
    """When to eject, for how long, and how many workers may be out at once.

    ``count_decay_s`` forgives one past ejection per that many seconds of healthy service
    since the worker last came back (0 disables forgiveness), like Envoy's decrementing
    ejection multiplier. ``failure_percentage_threshold`` (percent; 0 disables) ejects a
    worker with at least ``failure_percentage_min_requests`` requests in the last
    ``failure_percentage_interval_s`` of which that share failed.
    """

    consecutive_failures: int = 5
    base_ejection_s: float = 30.0
    max_ejection_s: float = 300.0
    max_ejected_fraction: float = 0.1
    count_decay_s: float = 300.0
    failure_percentage_threshold: float = 0.0
    failure_percentage_min_requests: int = 10
    failure_percentage_interval_s: float = 1.0

    def duration(self, count: int) -> float:
        """Seconds of the ``count``-th ejection: base * count, capped at the maximum."""
        return min(self.base_ejection_s * max(count, 1), self.max_ejection_s)

    def max_ejected(self, total: int) -> int:
        """How many of ``total`` workers may be ejected at once.

        NOTE: at least one when there are two or more workers, as Envoy does when the
        percentage rounds below one host: otherwise a 10% cap would protect nobody in a
        fleet of fewer than ten. A lone worker is never ejected: there is nowhere else to go.
        """
        if total <= 1:
            return 0
        # NOTE: the epsilon keeps 0.29 * 100 (= 28.999…) at 29.
        return max(1, math.floor(self.max_ejected_fraction * total + 1e-9))

    def next_count(self, previous: int, healthy_for: float | None) -> int:
        """The multiplier of the next ejection, after forgiving healthy time since the last.

        ``healthy_for`` is the seconds since the worker came back from its last ejection
        (None when it never was ejected).
        """
        if healthy_for is not None and self.count_decay_s > 0:
            previous = max(0, previous - int(healthy_for // self.count_decay_s))
        return previous + 1


class Ejectable(Protocol):
    """The fields of a worker record that ejection reads and writes."""

    id: str
    failures: int
    ejection_count: int
    ejected_until: float | None
    back_at: float | None
    ramp_from: float
    ramp_until: float
    ewma_s: float | None


W = TypeVar("W", bound=Ejectable)


_QUARTERS = 4


class _Window:
    """One worker's requests and failures over the last interval, in quarter buckets: the
    sums cover between three quarters of the interval and all of it."""

    __slots__ = ("_failures", "_requests", "_tick", "_width")

    def __init__(self, interval_s: float) -> None:
        self._width = interval_s / _QUARTERS
        self._tick = -_QUARTERS
        self._requests = [0] * _QUARTERS
        self._failures = [0] * _QUARTERS

    def add(self, now: float, failed: bool) -> None:
        tick = int(now // self._width)
        if tick != self._tick:
            for stale in range(max(self._tick + 1, tick - _QUARTERS + 1), tick + 1):
                self._requests[stale % _QUARTERS] = self._failures[stale % _QUARTERS] = 0
            self._tick = tick
        slot = tick % _QUARTERS
        self._requests[slot] += 1
        if failed:
            self._failures[slot] += 1

    def totals(self) -> tuple[int, int]:
        """(requests, failures) in the window, as of the latest ``add``."""
        return sum(self._requests), sum(self._failures)


class Ejector:
    """Ejection state across the workers: who is out, until when, and the event log.

    ``ejected`` and ``next_expiry`` are read on the request path; ``epoch`` changes whenever
    the set of ejected workers does (or ``invalidate`` is called), dropping ``healthy``'s cache.
    """

    def __init__(
        self,
        rules: EjectionRules,
        *,
        slow_start_s: float,
        on_eject: Callable[[Ejection], None] | None = None,
        log_size: int = 1000,
    ) -> None:
        self.rules = rules
        self.slow_start_s = slow_start_s
        self.on_eject = on_eject
        self.ejected = 0
        self.next_expiry = math.inf
        self.epoch = 0
        #: Ejections refused because ``max_ejected_fraction`` of the workers were out.
        self.suppressed = 0
        #: Every ejection ever recorded (local and remote), for a metrics counter.
        self.total = 0
        # NOTE: bounded so a flapping worker cannot grow gateway memory.
        self._log: deque[Ejection] = deque(maxlen=log_size)
        self._healthy: dict[Hashable, tuple[Any, ...]] = {}
        self._healthy_epoch = 0
        #: Failure-rate windows by worker id (only with a failure percentage threshold).
        self._windows: dict[str, _Window] = {}

    def events(self) -> list[Ejection]:
        return list(self._log)

    def recount(self, workers: Iterable[Ejectable]) -> None:
        """Re-derive the ejected count after the worker set changed."""
        known = set()
        self.ejected = 0
        for worker in workers:
            known.add(worker.id)
            if worker.ejected_until is not None:
                self.ejected += 1
        for gone in self._windows.keys() - known:
            del self._windows[gone]
        self.epoch += 1

    def invalidate(self) -> None:
        """The groups passed to ``healthy`` changed: forget what was cached."""
        self.epoch += 1

    def healthy(self, key: Hashable, workers: tuple[W, ...]) -> tuple[W, ...]:
        """``workers`` (the group named ``key``) without the ejected ones, cached per key."""
        if self._healthy_epoch != self.epoch:
            self._healthy.clear()
            self._healthy_epoch = self.epoch
        found: tuple[W, ...] | None = self._healthy.get(key)
        if found is None:
            found = self._healthy[key] = tuple(w for w in workers if w.ejected_until is None)
        return found

    @staticmethod
    def why_none(workers: Iterable[Ejectable], exclude: Collection[str]) -> str:
        """Why none of ``workers`` (none in panic) could be picked, for `NoReadyWorker`."""
        total = tried = ejected = 0
        for worker in workers:
            total += 1
            if worker.id in exclude:
                tried += 1
            elif worker.ejected_until is not None:
                ejected += 1
        if tried == total:
            return f"all {total} workers with it ready were already tried"
        if tried == 0:
            return f"all {total} workers with it ready are ejected after failures"
        return (
            f"the {total} workers with it ready are ejected after failures ({ejected}) "
            f"or were already tried ({tried})"
        )

    def _window(self, worker: Ejectable) -> _Window:
        window = self._windows.get(worker.id)
        if window is None:
            window = self._windows[worker.id] = _Window(self.rules.failure_percentage_interval_s)
        return window

    def succeeded(self, worker: Ejectable, now: float) -> None:
        """Count one success in the failure-rate window (the caller resets the streak)."""
        if self.rules.failure_percentage_threshold > 0 and worker.ejected_until is None:
            self._window(worker).add(now, False)

    def failed(self, worker: Ejectable, now: float, total: int) -> None:
        """Count one failure; eject once the streak reaches the threshold, or the failure
        rate over the window does, within the cap.

        NOTE: failures of an ejected worker (requests already in flight, or panic traffic)
        never extend its ejection; the streak and the window count again once it is back.
        A refused ejection keeps both, so the next failure asks again.
        """
        worker.failures += 1
        if worker.ejected_until is not None:
            return
        rules = self.rules
        requests = failures = 0
        if rules.failure_percentage_threshold > 0:
            window = self._window(worker)
            window.add(now, True)
            requests, failures = window.totals()
        if worker.failures >= rules.consecutive_failures:
            self._eject(worker, now, total, CONSECUTIVE_FAILURES)
        elif (
            requests >= max(1, rules.failure_percentage_min_requests)
            and failures * 100 >= rules.failure_percentage_threshold * requests
        ):
            self._eject(worker, now, total, FAILURE_PERCENTAGE)

    def _eject(self, worker: Ejectable, now: float, total: int, reason: str) -> None:
        if self.ejected >= self.rules.max_ejected(total):
            self.suppressed += 1
            return
        healthy_for = None if worker.back_at is None else now - worker.back_at
        count = self.rules.next_count(worker.ejection_count, healthy_for)
        until = now + self.rules.duration(count)
        self._set(worker, until, count)
        event = Ejection(worker.id, reason, now, until, count)
        self._record(event)
        if self.on_eject is not None:
            self.on_eject(event)

    def apply_remote(
        self, worker: Ejectable, until: float, count: int, reason: str, now: float, total: int
    ) -> bool:
        """Apply another replica's ejection (``until`` on our clock); True if state changed.

        NOTE: the cap is this replica's safety bound, so it wins over sharing: with it
        reached, the remote ejection is refused (counted in ``suppressed``). Re-applying an
        ejection already in force (an echo of our own publication) changes nothing.
        """
        if until <= now:
            return False
        current = worker.ejected_until
        if current is not None and current >= until and worker.ejection_count >= count:
            return False
        if current is None and self.ejected >= self.rules.max_ejected(total):
            self.suppressed += 1
            return False
        until = until if current is None else max(current, until)
        count = max(count, worker.ejection_count)
        self._set(worker, until, count)
        self._record(Ejection(worker.id, reason, now, until, count, remote=True))
        return True

    def expire(self, workers: Iterable[Ejectable], now: float) -> None:
        """Bring back every worker whose ejection has run out; find the next expiry."""
        upcoming = math.inf
        for worker in workers:
            until = worker.ejected_until
            if until is None:
                continue
            if until <= now:
                self.bring_back(worker, until)
            elif until < upcoming:
                upcoming = until
        self.next_expiry = upcoming

    def bring_back(
        self, worker: Ejectable, at: float, reason: str = "its ejection ran out"
    ) -> None:
        """End the worker's ejection at ``at``: fresh failure streak, slow start from ``at``,
        latency unmeasured. Logged with ``reason``.

        NOTE: the latency it had before it failed says nothing about it now (it may have
        restarted); kept, it could stay above its peers' forever, since only the requests a
        worker wins update its average, and sequential traffic would never pick it again.
        """
        if worker.ejected_until is None:
            return
        worker.ejected_until = None
        worker.failures = 0
        worker.ewma_s = None
        worker.back_at = at
        worker.ramp_from = at
        worker.ramp_until = at + self.slow_start_s
        self.ejected -= 1
        self.epoch += 1
        log.info(
            "worker %s readmitted: %s",
            worker.id,
            reason,
            extra={"event": "worker.readmitted", "worker": worker.id, "reason": reason},
        )

    def _set(self, worker: Ejectable, until: float, count: int) -> None:
        # NOTE: the worker comes back with a clean window: evidence from before its
        # ejection must not eject it again at its first failure.
        self._windows.pop(worker.id, None)
        if worker.ejected_until is None:
            self.ejected += 1
        worker.ejected_until = until
        worker.ejection_count = count
        self.next_expiry = min(self.next_expiry, until)
        self.epoch += 1

    def _record(self, event: Ejection) -> None:
        self._log.append(event)
        self.total += 1
        log.info(
            "worker %s ejected for %.1f s: %s",
            event.worker_id,
            event.until - event.at,
            event.reason,
            extra={
                "event": "worker.ejected",
                "worker": event.worker_id,
                "reason": event.reason,
                "ejected_s": round(event.until - event.at, 3),
                "ejections": event.count,
                "remote": event.remote,
            },
        )
