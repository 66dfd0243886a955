"""P2C's comparison between two workers: load times latency, slow start, and where a
newcomer's latency estimate starts. Pure arithmetic over the balancer's worker records; the
clock and the random draw come from the caller (`gateway.balancing.balancer`).

When the two have the same slow-start weight (neither ramps, or both began together, as
every worker a gateway finds at its start does) the lower ``(in_flight + 1) * ewma`` wins.
When their weights differ, one of the two is drawn in proportion to ``weight /
((in_flight + 1) * ewma)``: Envoy's rule too (P2C while all weights are equal, weighted
least-request otherwise).

NOTE: not the lower weighted score, as outside slow start: that comparison is deterministic,
so at low concurrency (both idle, equal latency) a ramping worker would lose every time
(weight < 1) and get nothing until its ramp ended: "slow" start would be no start. In
proportion, it gets ``w / (1 + w)`` of sequential traffic beside an equal peer, growing with
its weight; under load its share still grows with its peers' in-flight counts. Two that
ramp together keep the sharp comparison, so a gateway's first seconds still keep traffic
off a slow worker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

__all__ = ["Preference", "Rated"]


class Rated(Protocol):
    """The fields of a worker record the comparison reads (and `Preference.seed` writes)."""

    in_flight: int
    ewma_s: float | None
    ewma_at: float
    ramp_from: float
    ramp_until: float


W = TypeVar("W", bound=Rated)


class Preference:
    """How P2C weighs two candidates, for given slow-start and latency-average settings."""

    def __init__(self, slow_start_s: float, min_weight: float, ewma_ttl_s: float) -> None:
        self.slow_start_s = slow_start_s
        self.min_weight = min_weight
        self.ewma_ttl_s = ewma_ttl_s

    def latency(self, worker: Rated, now: float) -> float | None:
        """The worker's latency average, None when unmeasured or forgotten (``ewma_ttl_s``)."""
        value = worker.ewma_s
        if value is not None and self.ewma_ttl_s and now - worker.ewma_at > self.ewma_ttl_s:
            return None
        return value

    def scores(self, a: Rated, b: Rated, now: float) -> tuple[float, float]:
        """``(in_flight + 1) * ewma`` of both, slow start left out.

        An unmeasured worker is taken to be as fast as the peer it is compared with (both
        unmeasured: equal), so the choice falls to in-flight and slow start.
        """
        latency_a = self.latency(a, now)
        latency_b = self.latency(b, now)
        if latency_a is None:
            latency_a = 1.0 if latency_b is None else latency_b
        if latency_b is None:
            latency_b = latency_a
        return (a.in_flight + 1) * latency_a, (b.in_flight + 1) * latency_b

    def weight(self, worker: Rated, now: float) -> float:
        """Slow-start weight: linear from ``min_weight`` to 1 over ``slow_start_s``."""
        if now >= worker.ramp_until or self.slow_start_s <= 0:
            return 1.0
        progress = max(0.0, now - worker.ramp_from) / self.slow_start_s
        return self.min_weight + (1.0 - self.min_weight) * progress

    def choose(self, a: W, b: W, now: float, draw: Callable[[], float]) -> W:
        """P2C's pick of ``a`` or ``b``; ``draw`` (uniform in [0, 1)) is called only when
        their slow-start weights differ (see the module docstring)."""
        score_a, score_b = self.scores(a, b, now)
        if now < a.ramp_until or now < b.ramp_until:
            weight_a = self.weight(a, now)
            weight_b = self.weight(b, now)
            if weight_a != weight_b:
                share_a = weight_a / score_a
                share_b = weight_b / score_b
                return a if draw() * (share_a + share_b) < share_a else b
        return b if score_b < score_a else a

    def better(self, a: W, b: W, now: float) -> W:
        """The lower ``(in_flight + 1) * ewma / weight``: the worker P2C favours, without a
        draw (for explaining a choice, not for making it)."""
        score_a, score_b = self.scores(a, b, now)
        score_a /= self.weight(a, now)
        score_b /= self.weight(b, now)
        return b if score_b < score_a else a

    def seed(self, worker: Rated, peers: Iterable[Rated], now: float) -> None:
        """Start ``worker``'s latency average at the median of ``peers``' fresh ones (the
        workers serving a version it serves), or unmeasured when none has one.

        NOTE: a newcomer's or a readmitted worker's first sample then moves its average by
        ``ewma_alpha`` only: one cold first request (a warm-up, a restart) does not make it
        look many times slower than its peers and lose every comparison after it.
        """
        fresh = sorted(
            latency
            for latency in (self.latency(p, now) for p in peers if p is not worker)
            if latency is not None
        )
        if not fresh:
            worker.ewma_s = None
            return
        middle = len(fresh) // 2
        median = fresh[middle] if len(fresh) % 2 else (fresh[middle - 1] + fresh[middle]) / 2
        worker.ewma_s, worker.ewma_at = median, now
