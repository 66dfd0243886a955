"""The gateway's data plane core (no HTTP types): route, forward with retries, shadow.

A request is resolved and balanced from memory (`RoutingTable`), forwarded as bytes to one
worker, retried on another worker after a connect failure, dropped connection or 503 while
the retry budget allows (on the baseline instead, for a rollout's candidate that fails with
any 5xx), and bounded by the model's concurrency gate and the client's deadline. Every
attempt is counted per version (`OutcomeCounters`) for the rollout gates. A shadow copy,
when the policy asks for one, never touches the client's answer.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.balancing.balancer import Outcome
from gateway.balancing.retry import RetryBudget
from gateway.control.rollout_stats import OutcomeCounters
from gateway.errors import BackendUnavailable, BadGatewayRequest, DeadlineExceeded, Overloaded
from gateway.forward import Forwarder, Reply
from gateway.identity import Caller
from gateway.metrics import UNKNOWN_MODEL, GatewayMetrics, access_log
from gateway.ratelimit import RateLimiter
from gateway.routing import Route, RoutingTable
from gateway.settings import GatewaySettings
from modelgate.core.errors import ModelgateError

__all__ = ["GatewayDataPlane", "ModelGate"]

log = logging.getLogger("modelgate.gateway")
FORWARDED = (
    "content-type",
    "inference-header-content-length",
    "content-encoding",
    "accept-encoding",
)


def _to(route: Route, baseline: str) -> Route:
    """``route`` as served by the rollout's baseline after the candidate failed."""
    return replace(route, version=baseline, route=f"baseline-retry:{baseline}")


class ModelGate:
    """Per-model concurrency limit with a bounded wait queue; beyond both, 429 at once."""

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


@dataclass
class GatewayDataPlane:
    table: RoutingTable
    forwarder: Forwarder
    budget: RetryBudget
    metrics: GatewayMetrics
    settings: GatewaySettings
    limiter: RateLimiter | None = None
    #: Per-attempt outcomes per version, for rollout gates.
    outcomes: OutcomeCounters = field(default_factory=OutcomeCounters)
    _gates: dict[str, ModelGate] = field(default_factory=dict)
    _children: dict[tuple[str, str, str, str, int], tuple[Any, Any]] = field(default_factory=dict)
    _shadows: set[asyncio.Task[None]] = field(default_factory=set)

    def _observe(self, model: str, route: Route, worker: str, status: int, elapsed: float) -> None:
        # NOTE: ``.labels()`` costs a lock and a dict walk per call; the children are few
        # (model x version x arm x worker x status), so they are cached.
        key = (model, route.version, route.route, worker, status)
        children = self._children.get(key)
        if children is None:
            labels = (model, route.version, route.route, worker)
            children = (
                self.metrics.requests.labels(*labels, str(status)),
                self.metrics.latency.labels(*labels),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(elapsed)

    def model_label(self, model: str | None) -> str:
        """``model`` when the registry has it, else `UNKNOWN_MODEL` (bounded label values)."""
        snapshot = self.table.snapshot
        if model and snapshot is not None and model in snapshot.models:
            return model
        return UNKNOWN_MODEL

    def refused(self, model: str | None, exc: ModelgateError) -> None:
        """Count an inference request the gateway answered itself with ``exc``."""
        self.metrics.errors.labels(
            self.model_label(model), str(exc.status_code), type(exc).__name__
        ).inc()

    def _gate(self, model: str) -> ModelGate:
        gate = self._gates.get(model)
        if gate is None:
            gate = ModelGate(self.settings.model_concurrency, self.settings.model_queue)
            self._gates[model] = gate
        return gate

    def deadline(self, headers: Mapping[str, str]) -> float:
        """Absolute monotonic deadline: the client's ``X-Request-Timeout-Ms`` or the default."""
        budget = self.settings.request_timeout_s
        raw = headers.get("x-request-timeout-ms")
        if raw is not None:
            try:
                client = float(raw) / 1000.0
            except ValueError:
                client = math.nan
            if not client >= 0:  # also refuses NaN
                raise BadGatewayRequest(
                    f'X-Request-Timeout-Ms must be a number of milliseconds ≥ 0, got "{raw}"'
                )
            budget = min(budget, client)
        return time.monotonic() + budget

    async def infer(
        self,
        model: str,
        reference: str | None,
        headers: Mapping[str, str],
        body: bytes,
        client: Caller | None = None,
    ) -> Reply:
        """Serve one inference request; raises `ModelgateError` subclasses for the client,
        each counted by `refused`. ``client`` is who sent it (`gateway.identity`), for the
        rate limit."""
        try:
            started = time.monotonic()
            if self.limiter is not None and client is not None:
                try:
                    await self.limiter.check(client)
                except Overloaded:
                    self.metrics.shed.labels(self.model_label(model), "rate").inc()
                    raise
            deadline = self.deadline(headers)
            sticky = self.table.sticky_header(model)
            route = self.table.route(model, reference, headers.get(sticky or "x-route-key"))
            if deadline <= started:
                raise DeadlineExceeded("the request's deadline had passed before it was forwarded")
            gate = self._gate(model)
            try:
                await gate.acquire(model)
            except Overloaded:
                self.metrics.shed.labels(model, "queue").inc()
                raise
            try:
                forward_headers = {k: v for k in FORWARDED if (v := headers.get(k)) is not None}
                reply, worker, route = await self._forward(route, forward_headers, body, deadline)
            finally:
                gate.release()
            if route.shadow is not None:
                self._send_shadow(route, forward_headers, body)
            elapsed = time.monotonic() - started
            self._observe(model, route, worker, reply.status, elapsed)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "infer model=%s ref=%s version=%s route=%s worker=%s status=%d ms=%.2f",
                    model,
                    reference or "",
                    route.version,
                    route.route,
                    worker,
                    reply.status,
                    elapsed * 1000,
                )
            reply.headers.extend(
                [
                    (b"x-model-version", route.version.encode()),
                    (b"x-backend", worker.encode()),
                    (b"x-route", route.route.encode()),
                ]
            )
            return reply
        except ModelgateError as exc:
            self.refused(model, exc)
            raise

    async def _forward(
        self, route: Route, headers: dict[str, str], body: bytes, deadline: float
    ) -> tuple[Reply, str, Route]:
        """Send to a worker of ``route.version``; after a connect failure, reset or 503, again
        to another worker while the retry budget allows. During a rollout, a candidate
        attempt chosen by the policy that fails with any 5xx is retried on the baseline
        instead (`_baseline_for`). Returns the reply, its worker and the route it took.
        Every attempt is counted in `outcomes` (but those the client's deadline cut short)."""
        balancer = self.table.balancer
        version = route.version
        tried: set[str] = set()
        self.budget.request_started()
        try:
            retrying = False
            while True:
                worker = balancer.pick(route.model, version, exclude=tried)
                url = f"{self.table.urls[worker]}/v2/models/{route.model}/versions/{version}/infer"
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DeadlineExceeded(
                        f"deadline passed after trying {', '.join(sorted(tried))}"
                    )
                balancer.started(worker)
                sent = time.monotonic()
                outcome = Outcome.CANCELLED
                failed: Reply | None = None
                try:
                    reply = await self.forwarder.send(
                        "POST", url, body=body, headers=headers, timeout_s=remaining
                    )
                except BackendUnavailable as exc:
                    outcome, failure = Outcome.UNAVAILABLE, exc
                except DeadlineExceeded:
                    # NOTE: a client's short deadline says nothing about the worker's health.
                    client_bound = remaining < self.settings.request_timeout_s
                    outcome = Outcome.CANCELLED if client_bound else Outcome.UNAVAILABLE
                    raise
                else:
                    if reply.status < 500:
                        outcome = Outcome.OK
                    elif reply.status == 503:
                        outcome = Outcome.UNAVAILABLE
                        failure = BackendUnavailable(f"worker {worker} answered 503")
                    else:
                        outcome, failed = Outcome.FAILURE, reply
                        failure = BackendUnavailable(f"worker {worker} answered {reply.status}")
                finally:
                    elapsed = time.monotonic() - sent
                    balancer.finished(worker, elapsed, outcome)
                    if outcome is not Outcome.CANCELLED:
                        self.outcomes.record(
                            route.model, version, outcome is not Outcome.OK, elapsed
                        )
                    if retrying:
                        self.budget.retry_finished()
                        retrying = False
                served = route if version == route.version else _to(route, version)
                if outcome is Outcome.OK:
                    return reply, worker, served
                baseline = self._baseline_for(route, version)
                if baseline is None and failed is not None:
                    return failed, worker, served  # a 500 is the worker's answer, not retried
                if not self.budget.try_acquire_retry():
                    self.metrics.retries.labels(route.model, version, "denied").inc()
                    if failed is not None:
                        return failed, worker, served
                    raise failure
                retrying = True
                self.metrics.retries.labels(route.model, version, "allowed").inc()
                if baseline is not None:
                    log.info(
                        "retrying %s@%s on the rollout's baseline %s: %s",
                        route.model,
                        version,
                        baseline,
                        failure,
                    )
                    version, tried = baseline, set()
                else:
                    tried.add(worker)
                    log.info("retrying %s@%s elsewhere: %s", route.model, version, failure)
        finally:
            if retrying:  # the pick or the deadline check for a retry raised
                self.budget.retry_finished()
            self.budget.request_finished()

    def _baseline_for(self, route: Route, version: str) -> str | None:
        """The baseline to retry a failed attempt on: only while ``version`` is the candidate
        of an active rollout, the traffic policy chose it (a pin is never served by another
        version), the baseline satisfies the request's reference and has a ready worker."""
        baseline = self.table.baselines.get((route.model, version))
        if (
            baseline is None
            or version != route.version
            or not route.route.startswith("arm:")
            or all(c.version != baseline for c in route.resolution.candidates)
            or not self.table.balancer.has_ready(route.model, baseline)
        ):
            return None
        return baseline

    def _send_shadow(self, route: Route, headers: dict[str, str], body: bytes) -> None:
        assert route.shadow is not None
        if len(self._shadows) >= self.settings.shadow_max_in_flight:
            self.metrics.shadow.labels(route.model, route.shadow, "dropped").inc()
            return
        task = asyncio.create_task(self._shadow(route.model, route.shadow, headers, body))
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)

    async def _shadow(self, model: str, version: str, headers: dict[str, str], body: bytes) -> None:
        balancer = self.table.balancer
        try:
            worker = balancer.pick(model, version)
            url = self.table.urls[worker] + f"/v2/models/{model}/versions/{version}/infer"
            balancer.started(worker)
            sent = time.monotonic()
            try:
                reply = await self.forwarder.send(
                    "POST",
                    url,
                    body=body,
                    headers=headers,
                    timeout_s=self.settings.request_timeout_s,
                )
            except Exception:
                balancer.finished(worker, time.monotonic() - sent, Outcome.UNAVAILABLE)
                raise
            ok = reply.status < 500
            balancer.finished(
                worker, time.monotonic() - sent, Outcome.OK if ok else Outcome.FAILURE
            )
            self.metrics.shadow.labels(
                model, version, "ok" if reply.status == 200 else str(reply.status)
            ).inc()
        except Exception as exc:
            self.metrics.shadow.labels(model, version, "failed").inc()
            log.debug("shadow copy to %s@%s failed: %s", model, version, exc)

    async def get(self, model: str, reference: str | None, suffix: str) -> tuple[Reply, Route, str]:
        """Model metadata from a worker serving the resolved version (no retries)."""
        route = self.table.route(model, reference, None)
        balancer = self.table.balancer
        worker = balancer.pick(model, route.version)
        url = self.table.urls[worker] + f"/v2/models/{model}/versions/{route.version}{suffix}"
        reply = await self.forwarder.send(
            "GET", url, body=None, headers={}, timeout_s=self.settings.request_timeout_s
        )
        return reply, route, worker
