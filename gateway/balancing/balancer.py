"""Worker choice for one (model, version): P2C on in-flight * EWMA latency (the comparison
and slow start in `gateway.balancing.preference`), with outlier ejection and panic routing.
Pure logic: the clock and the RNG are injected.

Call protocol (the forwarder's): ``pick`` → ``started`` → send → ``finished`` with the
latency and an `Outcome`, exactly once per ``started``, on every path (use ``finally``).
Worker sets come from discovery through ``update``; probes call ``mark_ready``,
``mark_unready`` and ``readmit``; ejections from other replicas arrive through
``apply_remote_ejection`` and this replica's own leave through the ``on_eject`` hook.
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from gateway.balancing.outliers import REMOTE, Ejection, EjectionRules, Ejector
from gateway.balancing.preference import Preference
from gateway.errors import NoReadyWorker

__all__ = ["Balancer", "BalancerSettings", "Ejection", "Outcome", "WorkerInfo"]

Key = tuple[str, str]
_MIN_LATENCY_S = 1e-6


class BalancerSettings(BaseModel):
    """Balancing, outlier ejection, slow start and the retry budget. Part of
    `gateway.settings.GatewaySettings` (``MODELGATE_GATEWAY_*``); tests build it alone."""

    strategy: Literal["p2c", "round_robin"] = "p2c"
    #: Failures in a row (5xx, bad response, connect failure, 503, timeout) that eject.
    consecutive_failures: int = Field(default=5, ge=1)
    base_ejection_s: float = Field(default=30.0, gt=0)
    max_ejection_s: float = Field(default=300.0, gt=0)
    max_ejected_fraction: float = Field(default=0.1, ge=0, le=1)
    #: Healthy seconds that forgive one past ejection (shrinking the next one); 0 never.
    ejection_count_decay_s: float = Field(default=300.0, ge=0)
    #: Failure-rate ejection (Envoy's ``failure_percentage``): a worker with at least
    #: ``failure_percentage_min_requests`` requests over the last ``..._interval_s`` and
    #: this percentage of them failed is ejected too; 0 turns it off. NOTE: 10 requests
    #: in 1 s, not Envoy's 50 in 10 s, so that a worker failing 30% at its share of
    #: 100 req/s is out within 2 s (simulated: p99 1.3-1.5 s, fresh or with history).
    failure_percentage_threshold: float = Field(default=20.0, ge=0, le=100)
    failure_percentage_min_requests: int = Field(default=10, ge=1)
    failure_percentage_interval_s: float = Field(default=1.0, gt=0)
    #: Below this fraction of healthy workers for a version, route to all of them.
    panic_threshold: float = Field(default=0.5, ge=0, le=1)
    slow_start_s: float = Field(default=10.0, ge=0)
    slow_start_min_weight: float = Field(default=0.1, gt=0, le=1)
    #: Weight of each new OK latency sample in the per-worker moving average.
    ewma_alpha: float = Field(default=0.3, gt=0, le=1)
    #: A latency average with no new sample for this long is forgotten (0: never), so a
    #: worker that was slow once is tried again instead of losing every comparison.
    ewma_ttl_s: float = Field(default=2.0, ge=0)
    retry_budget_ratio: float = Field(default=0.2, ge=0)
    #: NOTE: Envoy's floor is 3; a worker that dies fails all its in-flight requests at
    #: once, so the floor must cover one worker's concurrency for a death to fail nothing.
    retry_budget_min_concurrent: int = Field(default=16, ge=0)


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker as discovery announces it. ``ready`` holds the (model, version) pairs loaded
    and warm; ``started_at`` is the monotonic time it was first seen (slow start begins
    there); ``capacity`` is the concurrency it announces (0: unknown).

    ``url`` is its OIP REST base URL ("" when it serves only gRPC); ``grpc_url`` its gRPC
    target (``host:port``) when it serves gRPC. ``remote`` maps a (model, version) to the
    names the worker itself knows them by (an external OIP server registered with
    ``remote_model`` / ``remote_version``); absent pairs keep their own names. ``external``:
    registered by the admin API (not announced by a modelgate worker)."""

    id: str
    url: str
    ready: frozenset[tuple[str, str]]
    started_at: float
    capacity: int = 0
    grpc_url: str | None = None
    remote: Mapping[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    external: bool = False


class Outcome(enum.Enum):
    """How an attempt ended, as the forwarder saw it."""

    OK = "ok"
    #: The worker answered 5xx (not 503) or a response that could not be used.
    FAILURE = "failure"
    #: Connect failure, dropped connection, 503 or timeout: retryable on another worker.
    UNAVAILABLE = "unavailable"
    #: Ended by the client (disconnect, or its own deadline shorter than the model's
    #: timeout): no verdict on the worker, only its in-flight count goes down.
    CANCELLED = "cancelled"


class _Worker:
    """Mutable per-worker state; kept across ``update`` calls while the id stays."""

    __slots__ = (
        "back_at",
        "ejected_until",
        "ejection_count",
        "ewma_at",
        "ewma_s",
        "failures",
        "id",
        "in_flight",
        "info",
        "overrides",
        "ramp_from",
        "ramp_until",
        "ready",
    )

    def __init__(self, worker_id: str, info: WorkerInfo, slow_start_s: float) -> None:
        self.id = worker_id
        self.info = info
        self.overrides: dict[Key, bool] = {}
        self.announce(info)
        self.ready = self.effective_ready()
        self.in_flight = 0
        self.ewma_s: float | None = None
        self.ewma_at = 0.0
        self.failures = 0
        self.ejection_count = 0
        self.ejected_until: float | None = None
        self.back_at: float | None = None
        self.ramp_from = info.started_at
        self.ramp_until = info.started_at + slow_start_s

    def announce(self, info: WorkerInfo) -> None:
        """Take ``info`` as the worker's new ready set. A modelgate worker's announcement
        clears the probes' verdicts; an external server's registration claims nothing, so
        each of its versions stays unready until a probe passes (verdicts already given on
        versions it still serves are kept)."""
        self.info = info
        if info.external:
            self.overrides = {key: self.overrides.get(key, False) for key in info.ready}
        else:
            self.overrides.clear()

    def effective_ready(self) -> frozenset[Key]:
        if not self.overrides:
            return self.info.ready
        added = {key for key, ready in self.overrides.items() if ready}
        removed = {key for key, ready in self.overrides.items() if not ready}
        return frozenset((self.info.ready | added) - removed)


class Balancer:
    """Chooses a worker per request and keeps the health state that choice depends on.

    Not thread-safe: call it from one event loop. ``pick``, ``has_ready``, ``started`` and
    ``finished`` cost about a µs and allocate only the lookup key on the common path.
    """

    def __init__(
        self,
        settings: BalancerSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        on_eject: Callable[[Ejection], None] | None = None,
    ) -> None:
        self.settings = settings = settings if settings is not None else BalancerSettings()
        rules = EjectionRules(
            consecutive_failures=settings.consecutive_failures,
            base_ejection_s=settings.base_ejection_s,
            max_ejection_s=settings.max_ejection_s,
            max_ejected_fraction=settings.max_ejected_fraction,
            count_decay_s=settings.ejection_count_decay_s,
            failure_percentage_threshold=settings.failure_percentage_threshold,
            failure_percentage_min_requests=settings.failure_percentage_min_requests,
            failure_percentage_interval_s=settings.failure_percentage_interval_s,
        )
        # NOTE: ``on_eject`` runs inside ``finished``: it must not block or raise (schedule
        # the publish as a task). Remote ejections do not call it, so nothing echoes.
        self._ejector = Ejector(rules, slow_start_s=settings.slow_start_s, on_eject=on_eject)
        self._clock = clock
        self._random = (rng if rng is not None else random.Random()).random
        self._round_robin = settings.strategy == "round_robin"
        self._alpha = settings.ewma_alpha
        self._ewma_ttl = settings.ewma_ttl_s
        self._preference = Preference(
            settings.slow_start_s, settings.slow_start_min_weight, settings.ewma_ttl_s
        )
        self._panic = settings.panic_threshold
        self._workers: dict[str, _Worker] = {}
        self._index: dict[Key, tuple[_Worker, ...]] = {}
        self._turn: dict[Key, int] = {}
        #: True when the latest ``pick`` ignored ejections (panic routing). ``panic_picks``
        #: counts every such pick; ``/metrics`` exports it, with ``ejections_total`` and
        #: ``ejections_suppressed``, as ``modelgate_gateway_balancer_*`` (`gateway.metrics`).
        self.last_pick_panic = False
        self.panic_picks = 0

    @property
    def rules(self) -> EjectionRules:
        return self._ejector.rules

    @property
    def on_eject(self) -> Callable[[Ejection], None] | None:
        """Called with each ejection this replica decides; settable after construction."""
        return self._ejector.on_eject

    @on_eject.setter
    def on_eject(self, hook: Callable[[Ejection], None] | None) -> None:
        self._ejector.on_eject = hook

    # -- worker set ---------------------------------------------------------------------

    def update(self, workers: Mapping[str, WorkerInfo]) -> None:
        """Replace the known workers (keys are worker ids).

        Ids that stay keep their load, latency and ejection state; new ids start slow start
        at ``WorkerInfo.started_at``. Probe verdicts (``mark_ready``/``mark_unready``) on a
        worker last until an update announces a different ready set for it. An external
        server (``WorkerInfo.external``) joins with every version unready: it is routed to
        only once a probe passes (`_Worker.announce`).
        NOTE: not until any update: discovery republishes the whole set when any worker
        changes, which would otherwise wipe probe results of workers that did not.
        """
        fresh: dict[str, _Worker] = {}
        joined: list[_Worker] = []
        for worker_id, info in workers.items():
            worker = self._workers.get(worker_id)
            if worker is None:
                worker = _Worker(worker_id, info, self.settings.slow_start_s)
                joined.append(worker)
            elif worker.info != info:
                if worker.info.ready != info.ready or worker.info.external != info.external:
                    worker.announce(info)
                worker.info = info
            worker.ready = worker.effective_ready()
            fresh[worker_id] = worker
        self._workers = fresh
        self._ejector.recount(fresh.values())
        self._reindex()
        if joined:
            now = self._clock()
            for worker in joined:
                self._seed(worker, now)

    def _reindex(self) -> None:
        index: dict[Key, list[_Worker]] = {}
        for worker in sorted(self._workers.values(), key=lambda w: w.id):
            for key in worker.ready:
                index.setdefault(key, []).append(worker)
        self._index = {key: tuple(ws) for key, ws in index.items()}
        self._ejector.invalidate()

    def has_ready(self, model: str, version: str) -> bool:
        """Whether any known worker has this version loaded and warm (ejected ones count:
        panic routing still sends them traffic when nothing healthier is left)."""
        return (model, version) in self._index

    def serving(self, model: str, version: str) -> tuple[str, ...]:
        """The ids of the workers that have this version loaded and warm, sorted (ejected
        ones included, as in `has_ready`)."""
        return tuple(worker.id for worker in self._index.get((model, version), ()))

    def mark_unready(self, worker_id: str, model: str, version: str) -> None:
        """An active probe found the version not ready on this worker: stop routing it there."""
        self._override(worker_id, (model, version), False)

    def mark_ready(self, worker_id: str, model: str, version: str) -> None:
        """An active probe found the version ready on this worker: route it there."""
        self._override(worker_id, (model, version), True)

    def _override(self, worker_id: str, key: Key, ready: bool) -> None:
        worker = self._workers.get(worker_id)
        if worker is None:
            return
        worker.overrides[key] = ready
        effective = worker.effective_ready()
        if effective != worker.ready:
            worker.ready = effective
            self._reindex()

    # -- the hot path --------------------------------------------------------------------

    def pick(self, model: str, version: str, exclude: Collection[str] = ()) -> str:
        """The id of the worker to send this request to; raises `NoReadyWorker`.

        Candidates: workers with the version ready, not ejected, not in ``exclude`` (ids
        already tried). When fewer than ``panic_threshold`` of the ready workers are
        healthy, ejections are ignored (``last_pick_panic`` is set). P2C takes two distinct
        random candidates and the lower ``(in_flight + 1) * ewma_latency``; while either is
        in slow start, one of them at random in proportion to ``weight / that score``.
        """
        key = (model, version)
        workers = self._index.get(key)
        if workers is None:
            raise NoReadyWorker(model, version, self._why_unready(key))
        now = self._clock()
        candidates, panic = self._eligible(key, workers, now, exclude)
        self.last_pick_panic = panic
        if panic:
            self.panic_picks += 1
        if not candidates:
            raise NoReadyWorker(model, version, self._ejector.why_none(workers, exclude))
        if self._round_robin:
            turn = self._turn.get(key, 0)
            self._turn[key] = turn + 1
            return candidates[turn % len(candidates)].id
        return self._p2c(candidates, now).id

    def unready_on(self, model: str, version: str) -> list[str]:
        """Workers that serve ``model``@``version`` (announced, or registered) but that
        probes find not ready for it: an external server not probed yet, or one gone down.
        Off the hot path: for error messages."""
        key = (model, version)
        return sorted(
            w.id for w in self._workers.values() if key in w.info.ready and key not in w.ready
        )

    def _why_unready(self, key: Key) -> str:
        probed = self.unready_on(*key)
        if not probed:
            return "no worker has it loaded and ready"
        return f"probes find it not ready on {', '.join(probed)}"

    def least_loaded(self, model: str, version: str) -> str | None:
        """The eligible worker that wins P2C's comparison against every other one, or None;
        changes no state (for explaining a resolution, not for routing)."""
        workers = self._index.get((model, version))
        if workers is None:
            return None
        now = self._clock()
        candidates, _ = self._eligible((model, version), workers, now, ())
        if not candidates:
            return None
        best = candidates[0]
        for other in candidates[1:]:
            best = self._preference.better(best, other, now)
        return best.id

    def _eligible(
        self, key: Key, workers: tuple[_Worker, ...], now: float, exclude: Collection[str]
    ) -> tuple[tuple[_Worker, ...], bool]:
        """Ready workers not ejected (all of them in panic mode) and not excluded."""
        ejector = self._ejector
        if now >= ejector.next_expiry:
            self._expire(now)
        candidates = workers
        panic = False
        if ejector.ejected:
            healthy = ejector.healthy(key, workers)
            if len(healthy) < self._panic * len(workers):
                panic = True
            else:
                candidates = healthy
        if exclude:
            candidates = tuple(w for w in candidates if w.id not in exclude)
        return candidates, panic

    def _p2c(self, candidates: tuple[_Worker, ...], now: float) -> _Worker:
        n = len(candidates)
        if n == 1:
            return candidates[0]
        i = int(self._random() * n)
        j = int(self._random() * (n - 1))
        if j >= i:
            j += 1
        return self._preference.choose(candidates[i], candidates[j], now, self._random)

    def _seed(self, worker: _Worker, now: float) -> None:
        """Start ``worker``'s latency average at its peers' (`Preference.seed`)."""
        peers = {p for key in worker.ready for p in self._index.get(key, ())}
        self._preference.seed(worker, peers, now)

    def started(self, worker_id: str) -> None:
        """A request was sent to ``worker_id`` (after ``pick``)."""
        worker = self._workers.get(worker_id)
        if worker is not None:
            worker.in_flight += 1

    def finished(self, worker_id: str, latency_s: float, outcome: Outcome) -> None:
        """The request ``started`` on ``worker_id`` ended after ``latency_s`` seconds.

        OK samples feed the EWMA and reset the failure streak; FAILURE and UNAVAILABLE
        extend it and may eject the worker; CANCELLED changes neither. Unknown ids (removed
        meanwhile) are ignored.
        """
        worker = self._workers.get(worker_id)
        if worker is None:
            return
        if worker.in_flight > 0:
            worker.in_flight -= 1
        if outcome is Outcome.OK:
            worker.failures = 0
            # NOTE: floored so a zero sample (coarse clock) cannot zero the score and hide
            # the in-flight term.
            sample = max(latency_s, _MIN_LATENCY_S)
            previous = worker.ewma_s
            now = self._clock()
            # NOTE: a forgotten average does not weigh on the first sample after it: blended
            # in, one 50 ms stall would keep a now-fast worker out for several more TTLs.
            if self._ewma_ttl and now - worker.ewma_at > self._ewma_ttl:
                previous = None
            worker.ewma_s = (
                sample if previous is None else previous + self._alpha * (sample - previous)
            )
            worker.ewma_at = now
            self._ejector.succeeded(worker, now)
            return
        if outcome is Outcome.CANCELLED:
            return
        now = self._clock()
        if now >= self._ejector.next_expiry:
            self._expire(now)
        self._ejector.failed(worker, now, len(self._workers))

    # -- ejection ------------------------------------------------------------------------

    def _expire(self, now: float) -> None:
        ejected = [w for w in self._workers.values() if w.ejected_until is not None]
        self._ejector.expire(self._workers.values(), now)
        for worker in ejected:
            if worker.ejected_until is None:
                self._seed(worker, now)

    def readmit(self, worker_id: str) -> None:
        """An active probe succeeded: end the worker's ejection now (slow start follows,
        its latency average starting at its peers')."""
        worker = self._workers.get(worker_id)
        if worker is not None and worker.ejected_until is not None:
            now = self._clock()
            self._ejector.bring_back(worker, now, "an active probe succeeded")
            self._seed(worker, now)

    def apply_remote_ejection(
        self, worker_id: str, until: float, count: int, *, reason: str = REMOTE
    ) -> bool:
        """Apply an ejection another replica decided; returns whether anything changed.

        ``until`` is on *this* balancer's clock: convert a published duration or wall-clock
        deadline before calling. The ``max_ejected_fraction`` cap applies as to local ones,
        and an ejection already in force (an echo of our own) changes nothing.
        """
        worker = self._workers.get(worker_id)
        if worker is None:
            return False
        now = self._clock()
        if now >= self._ejector.next_expiry:
            self._expire(now)
        return self._ejector.apply_remote(worker, until, count, reason, now, len(self._workers))

    def ejections(self) -> list[Ejection]:
        """Recent ejections (local and remote), oldest first; at most the last 1,000."""
        return self._ejector.events()

    @property
    def ejections_total(self) -> int:
        """Every ejection recorded since start (local and remote); on ``/metrics`` as
        ``modelgate_gateway_balancer_ejections_total``."""
        return self._ejector.total

    @property
    def ejections_suppressed(self) -> int:
        """Ejections refused because ``max_ejected_fraction`` of the workers were out; on
        ``/metrics`` as ``modelgate_gateway_balancer_ejections_suppressed_total``."""
        return self._ejector.suppressed

    def snapshot(self) -> list[dict[str, Any]]:
        """Per worker, sorted by id, for ``GET /admin/v1/workers`` and the resolve trace.

        ``ejected_until`` is on the monotonic clock; ``ejected_for_s`` is what remains.
        """
        now = self._clock()
        if now >= self._ejector.next_expiry:
            self._expire(now)
        rows: list[dict[str, Any]] = []
        for worker in sorted(self._workers.values(), key=lambda w: w.id):
            until = worker.ejected_until
            rows.append(
                {
                    "id": worker.id,
                    "url": worker.info.url,
                    "ready": sorted(f"{m}@{v}" for m, v in worker.ready),
                    "capacity": worker.info.capacity,
                    "in_flight": worker.in_flight,
                    "ewma_ms": None if worker.ewma_s is None else worker.ewma_s * 1000.0,
                    "ejected_until": until,
                    "ejected_for_s": None if until is None else until - now,
                    "ejection_count": worker.ejection_count,
                    "consecutive_failures": worker.failures,
                    "weight": self._preference.weight(worker, now),
                }
            )
        return rows
