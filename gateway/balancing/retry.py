"""Retry budget: retries may add at most a fraction of the load in flight (Envoy semantics).

What is retried is the data plane's choice (`gateway.dataplane`, ``retry_on``): inference
is idempotent by design (a worker keeps no state between requests), so an attempt may be
sent again; it always goes to a worker the request has not tried yet, and only with a slot
from this budget, taken when the retry is decided (also when an attempt in flight on a
worker gone unready is abandoned) and given back when that retry ends.

A retry is allowed while ``active retries < max(min_concurrent, ratio * active requests)``:
with the gateway's defaults (``MODELGATE_GATEWAY_RETRY_BUDGET_RATIO=0.2``,
``MODELGATE_GATEWAY_RETRY_BUDGET_MIN_CONCURRENT=16``), 20% of the requests in flight may be
retries, and 16 may always be. The floor is above Envoy's 3 because a worker that dies
fails all its in-flight requests at once (see `BalancerSettings`); the class's own defaults
(ratio 0.2, floor 3) are Envoy's, for callers that build a budget without settings.

NOTE: concurrency-based (Envoy's ``retry_budget``), not a token bucket with a TTL window
(Finagle, Linkerd). It tracks load as it is right now, so it needs no clock and no window
to tune, and frees budget the moment a retry ends. Its weakness, that retries ending
instantly (connection refused) barely occupy the budget, is bounded elsewhere: the
forwarder retries a request at most once per other worker (``exclude``), and ejection
removes a refusing worker after a few failures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.balancing.balancer import BalancerSettings

__all__ = ["RetryBudget"]


class RetryBudget:
    """Counts requests and retries in flight and decides whether one more retry may start.

    Protocol: ``request_started``/``request_finished`` around each client request (the first
    attempt and all its retries); ``try_acquire_retry`` before a retry and, when it returned
    True, ``retry_finished`` when that retry ends (use ``finally``). Single event loop only.
    """

    def __init__(self, ratio: float = 0.2, min_concurrent: int = 3) -> None:
        if ratio < 0 or min_concurrent < 0:
            raise ValueError(
                f"retry budget needs ratio >= 0 and min_concurrent >= 0, "
                f"got ratio={ratio}, min_concurrent={min_concurrent}"
            )
        self.ratio = ratio
        self.min_concurrent = min_concurrent
        self.active_requests = 0
        self.active_retries = 0
        #: Counters for metrics: retries let through and refused since start.
        self.retries_allowed = 0
        self.retries_denied = 0

    @classmethod
    def from_settings(cls, settings: BalancerSettings) -> RetryBudget:
        """From ``MODELGATE_GATEWAY_RETRY_BUDGET_RATIO`` / ``..._MIN_CONCURRENT`` (defaults
        0.2 and 16)."""
        return cls(settings.retry_budget_ratio, settings.retry_budget_min_concurrent)

    @property
    def limit(self) -> float:
        """How many retries may be in flight at the current load."""
        return max(float(self.min_concurrent), self.ratio * self.active_requests)

    def request_started(self) -> None:
        self.active_requests += 1

    def request_finished(self) -> None:
        # NOTE: clamped, not raised: these calls sit in ``finally`` blocks, where raising
        # would replace the error actually being handled.
        self.active_requests = max(0, self.active_requests - 1)

    def try_acquire_retry(self) -> bool:
        """Take a retry slot if the budget has one; counts the decision either way."""
        if self.active_retries < self.limit:
            self.active_retries += 1
            self.retries_allowed += 1
            return True
        self.retries_denied += 1
        return False

    def retry_finished(self) -> None:
        self.active_retries = max(0, self.active_retries - 1)
