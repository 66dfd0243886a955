"""The attempts in flight on each worker, so that news about a worker reaches them at once.

A hung worker (SIGSTOPped, blackholed, wedged) keeps every request sent to it until
something gives up. Probes notice within about one probe interval plus the probe timeout,
and the balancer ejects a worker after its failures; `InFlight` lets both verdicts reach
the requests already waiting there, instead of only the requests still to come. The data
plane asks `InFlight.move` to abandon those that can go elsewhere (`gateway.dataplane`).
"""

from __future__ import annotations

from collections.abc import Iterator

from gateway.balancing.balancer import Balancer
from gateway.balancing.retry import RetryBudget
from gateway.errors import NoReadyWorker
from gateway.forward import Abort

__all__ = ["Attempt", "InFlight"]


class Attempt(Abort):
    """One send of a request to one worker. ``tried`` is the request's set of workers
    already tried (shared, not copied). When the data plane abandons it, it takes the retry
    slot and picks the next worker at that moment: ``retry_held`` and ``next_worker``."""

    __slots__ = ("model", "next_worker", "retry_held", "tried", "version", "worker")

    def __init__(self, worker: str, model: str, version: str, tried: set[str]) -> None:
        # NOTE: on the request path: Abort's fields set here rather than through super().
        self.reason = None
        self._waiter = self._connection = self.on_fire = None
        self.worker = worker
        self.model = model
        self.version = version
        self.tried = tried
        self.retry_held = False
        self.next_worker: str | None = None


class InFlight:
    """Attempts in flight, by worker id. Single event loop only."""

    def __init__(self) -> None:
        self._by_worker: dict[str, set[Attempt]] = {}

    def add(self, attempt: Attempt) -> None:
        attempts = self._by_worker.get(attempt.worker)
        if attempts is None:
            attempts = self._by_worker[attempt.worker] = set()
        attempts.add(attempt)

    def discard(self, attempt: Attempt) -> None:
        # NOTE: an emptied set stays (one per worker id seen): dropping and re-creating it
        # would cost two allocations per request at low concurrency.
        attempts = self._by_worker.get(attempt.worker)
        if attempts is not None:
            attempts.discard(attempt)

    def on(
        self, worker: str, model: str | None = None, version: str | None = None
    ) -> Iterator[Attempt]:
        """The attempts on ``worker`` (only those for ``model``@``version`` when given), as a
        snapshot: abandoning one while iterating is safe."""
        for attempt in tuple(self._by_worker.get(worker, ())):
            if model is None or (attempt.model == model and attempt.version == version):
                yield attempt

    def move(
        self,
        balancer: Balancer,
        budget: RetryBudget,
        worker: str,
        model: str | None,
        version: str | None,
        reason: str,
    ) -> list[tuple[Attempt, bool]]:
        """Abandon each attempt `on` ``worker`` that has another worker to go to and gets
        a retry slot from ``budget`` (taken now, for its retry: ``retry_held``); returns
        the attempts that had somewhere to go, each with whether it was moved.

        NOTE: an attempt with nowhere else to go runs on: the one worker left may answer.
        """
        decisions: list[tuple[Attempt, bool]] = []
        for attempt in self.on(worker, model, version):
            if attempt.reason is not None:
                continue
            try:
                following = balancer.pick(
                    attempt.model, attempt.version, exclude=attempt.tried | {worker}
                )
            except NoReadyWorker:
                continue
            moved = budget.try_acquire_retry()
            if moved:
                attempt.retry_held, attempt.next_worker = True, following
                attempt.fire(reason)
            decisions.append((attempt, moved))
        return decisions

    def __len__(self) -> int:
        return sum(len(attempts) for attempts in self._by_worker.values())
