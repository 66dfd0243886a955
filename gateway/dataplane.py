"""The gateway's data plane core (no HTTP types): route, forward with retries, shadow.

A request is resolved and balanced from memory (`RoutingTable`), forwarded as bytes to one
worker, and bounded by the model's concurrency gate (`gateway.concurrency`) and the client's
deadline. A shadow copy (`gateway.shadow`), when the policy asks for one, never touches the
client's answer.

Retries. Inference is idempotent by design (a worker keeps no state between requests), so
an attempt that failed in one of the ``retry_on`` conditions (`gateway.settings.RetryOn`)
is sent again, to a worker not yet tried, while the retry budget allows. Each attempt is
bounded by ``attempt_timeout_s`` within the client's remaining deadline; one that runs past
it counts against its worker. An attempt in flight on a worker that probes find unready,
or that the balancer ejects, is abandoned and retried elsewhere (``unready``) when another
worker and a retry slot are free; otherwise it runs on. When no retry is possible a worker's
5xx answer reaches the client as it was.

Rollouts. Every attempt of a rollout's candidate or baseline is counted (`OutcomeCounters`)
for its gates. A candidate attempt chosen by the policy that fails with any 5xx or a failed
connect is retried on the baseline instead, whatever ``retry_on`` says, within the budget:
the gates see the failure, the client does not.

Transports. What is protocol-specific, how one attempt reaches a worker and what its
answer means, is a `gateway.transport.Transport` (HTTP by default, gRPC from
`gateway.grpc`); everything here serves both alike. Workers a transport cannot reach are
never candidates for its requests.

Health. Only worker-side faults count against a worker: a 5xx answer, a failed connect,
a dropped connection, a timed-out or abandoned attempt. A 4xx (the client's bad input, such
as an invalid tensor) is an answer like a 200, and a client's own short deadline is no
verdict.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from opentelemetry.trace import SpanKind

from gateway.attempts import Attempt, InFlight
from gateway.balancing.balancer import Outcome
from gateway.balancing.retry import RetryBudget
from gateway.concurrency import ModelGates
from gateway.control.rollout_stats import OutcomeCounters
from gateway.errors import (
    BackendUnavailable,
    BadGatewayRequest,
    DeadlineExceeded,
    NoReadyWorker,
    Overloaded,
)
from gateway.external import rename_infer, rename_metadata
from gateway.forward import Forwarder, Reply
from gateway.identity import Caller
from gateway.inbound import Inbound, attempt_span, log_request, log_retry
from gateway.metrics import UNKNOWN_MODEL, GatewayMetrics
from gateway.ratelimit import RateLimiter
from gateway.routing import Route, RoutingTable
from gateway.settings import GatewaySettings
from gateway.shadow import Shadows
from gateway.transport import HttpTransport, Transport
from modelgate.core import tracing
from modelgate.core.errors import ModelgateError

__all__ = ["GatewayDataPlane"]

log = logging.getLogger("modelgate.gateway")


def _served(route: Route, version: str) -> Route:
    """``route`` as served by ``version``: itself, or the rollout's baseline after the
    candidate failed."""
    if version == route.version:
        return route
    return replace(route, version=version, route=f"baseline-retry:{version}")


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
    _children: dict[tuple[str, str, str, str, int], tuple[Any, Any]] = field(default_factory=dict)
    #: Attempts in flight by worker, for `worker_unready` and `worker_ejected`.
    in_flight: InFlight = field(default_factory=InFlight)
    #: The transport of requests that name none (OIP v2 REST over ``forwarder``).
    http: HttpTransport = field(init=False)
    gates: ModelGates = field(init=False)
    shadows: Shadows = field(init=False)
    #: Spans of requests and attempts (`modelgate.core.tracing`); None: tracing is off.
    tracer: Any = field(default_factory=lambda: tracing.tracer("modelgate.gateway"))

    def __post_init__(self) -> None:
        self.http = HttpTransport(self.table, self.forwarder)
        self.gates = ModelGates(self.settings.model_concurrency, self.settings.model_queue)
        self.shadows = Shadows(self.table, self.settings, self.metrics, self.pick)

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

    def refused(
        self,
        model: str | None,
        exc: ModelgateError,
        inbound: Inbound | None = None,
        reference: str | None = None,
    ) -> None:
        """Count an inference request the gateway answered itself with ``exc``, and write
        its access line when ``inbound`` is given."""
        self.metrics.errors.labels(
            self.model_label(model), str(exc.status_code), type(exc).__name__
        ).inc()
        if inbound is not None:
            log_request(inbound, model, reference, exc.status_code, exc.message)

    def deadline(self, headers: Mapping[str, str], timeout_s: float | None = None) -> float:
        """Absolute monotonic deadline: the client's ``X-Request-Timeout-Ms`` or
        ``timeout_s`` (a gRPC call's own deadline), whichever is shorter, or the default."""
        budget = self.settings.request_timeout_s
        if timeout_s is not None:
            budget = min(budget, max(0.0, timeout_s))
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
        transport: Transport | None = None,
        timeout_s: float | None = None,
        inbound: Inbound | None = None,
    ) -> Reply:
        """Serve one inference request; raises `ModelgateError` subclasses for the client,
        each counted by `refused`. ``client`` is who sent it (`gateway.identity`), for the
        rate limit; ``transport`` how it reaches a worker (default `http`); ``timeout_s`` the
        client's own deadline when its protocol carries one (`deadline`); ``inbound`` its
        request id and trace context (default: from ``headers``). Every request, answered
        or refused, writes one access line (`gateway.inbound.log_request`)."""
        if transport is None:
            transport = self.http
        if inbound is None:
            inbound = Inbound.of(headers)
        if self.tracer is not None:
            inbound.span = self.tracer.start_span(
                f"infer {model}", context=tracing.parent(inbound.traceparent), kind=SpanKind.SERVER
            )
        try:
            reply = await self._infer(model, reference, headers, body, client, transport,
                                      timeout_s, inbound)  # fmt: skip
        except ModelgateError as exc:
            self.refused(model, exc, inbound, reference)
            raise
        except BaseException as exc:
            cancelled = isinstance(exc, asyncio.CancelledError)
            # NOTE: 499 as nginx logs a client that left before its answer.
            log_request(inbound, model, reference, 499 if cancelled else 500, repr(exc))
            raise
        log_request(inbound, model, reference, reply.status, None)
        return reply

    async def _infer(
        self,
        model: str,
        reference: str | None,
        headers: Mapping[str, str],
        body: bytes,
        client: Caller | None,
        transport: Transport,
        timeout_s: float | None,
        inbound: Inbound,
    ) -> Reply:
        started = inbound.started
        if self.limiter is not None and client is not None:
            try:
                await self.limiter.check(client)
            except Overloaded:
                self.metrics.shed.labels(self.model_label(model), "rate").inc()
                raise
        deadline = self.deadline(headers, timeout_s)
        sticky = self.table.sticky_header(model)
        route = inbound.route = self.table.route(
            model, reference, headers.get(sticky or "x-route-key")
        )
        if deadline <= time.monotonic():
            raise DeadlineExceeded("the request's deadline had passed before it was forwarded")
        gate = self.gates[model]
        try:
            await gate.acquire(model)
        except Overloaded:
            self.metrics.shed.labels(model, "queue").inc()
            raise
        try:
            forward_headers = {
                k: v for k in transport.forwarded if (v := headers.get(k)) is not None
            }
            forward_headers["x-request-id"] = inbound.request_id
            reply, worker, route = await self._forward(
                transport, route, forward_headers, body, deadline, inbound
            )
            inbound.route = route
        finally:
            gate.release()
        # NOTE: the gRPC transport renames an external server's protobuf answer itself.
        if transport is self.http and worker in self.table.external:
            reply = rename_infer(reply, model, route.version)
        if route.shadow is not None:
            self.shadows.send(transport, model, route.shadow, forward_headers, body)
        self._observe(model, route, worker, reply.status, time.monotonic() - started)
        reply.headers.extend(
            [
                (b"x-model-version", route.version.encode()),
                (b"x-backend", worker.encode()),
                (b"x-route", route.route.encode()),
            ]
        )
        return reply

    def pick(self, transport: Transport, model: str, version: str, tried: set[str]) -> str:
        """`Balancer.pick` among the workers ``transport`` reaches (``tried`` holds them
        already, `Transport.unreachable`); raises `NoReadyWorker`, naming the protocol when
        no ready worker serves it."""
        balancer = self.table.balancer
        try:
            return balancer.pick(model, version, exclude=tried)
        except NoReadyWorker:
            unreachable = transport.unreachable
            ready = balancer.serving(model, version)
            if unreachable and ready and all(w in unreachable for w in ready):
                raise NoReadyWorker(
                    model, version, f"none of its ready workers serves {transport.name}"
                ) from None
            raise

    async def _forward(
        self,
        transport: Transport,
        route: Route,
        headers: dict[str, str],
        body: bytes,
        deadline: float,
        inbound: Inbound,
    ) -> tuple[Reply, str, Route]:
        """Send to a worker of ``route.version``; after a ``retry_on`` failure, again to a
        worker not yet tried while the retry budget allows. During a rollout, a candidate
        attempt chosen by the policy that fails with any 5xx or a failed connect is retried on
        the baseline instead (`_baseline_for`). Returns the reply, its worker and the route it took.
        Each attempt of a version in an active rollout is counted in `outcomes` (but those
        the client's deadline cut short)."""
        balancer = self.table.balancer
        retry_on = self.settings.retry_on
        version = route.version
        # NOTE: the workers the transport cannot reach count as tried, so that no pick (a
        # retry's, or an abandoned attempt's in `InFlight.move`) ever chooses one.
        unreachable = transport.unreachable
        tried: set[str] = set(unreachable)
        chosen: str | None = None
        self.budget.request_started()
        retrying = False  # this request holds a retry slot for the attempt being made
        try:
            while True:
                # NOTE: a worker chosen when an attempt was abandoned may have left since.
                if chosen is None or chosen not in transport.targets:
                    chosen = self.pick(transport, route.model, version, tried)
                worker, chosen = chosen, None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    named = ", ".join(sorted(tried - unreachable))
                    raise DeadlineExceeded(
                        f"deadline passed after trying {named}"
                        if named
                        else "the request's deadline had passed before it was forwarded"
                    )
                attempt = Attempt(worker, route.model, version, tried)
                answer: Reply | None = None  # a 5xx answer the client may get as it is
                try:
                    reply = await self._attempt(
                        transport, attempt, headers, body, remaining, inbound
                    )
                    if reply.status < 500:
                        return reply, worker, _served(route, version)
                    if reply.status == 503:
                        failure = BackendUnavailable(f"worker {worker} answered 503")
                    else:
                        answer = reply
                        failure = BackendUnavailable(
                            f"worker {worker} answered {reply.status}", "5xx"
                        )
                except BackendUnavailable as exc:
                    failure = exc
                finally:
                    if retrying:
                        self.budget.retry_finished()
                    # NOTE: abandoning took a slot for the next attempt; released by the
                    # outer ``finally`` when the answer came anyway.
                    retrying = attempt.retry_held
                served = _served(route, version)
                tried.add(worker)
                if attempt.retry_held:
                    chosen = attempt.next_worker
                    log_retry(inbound, route.model, version, worker, failure, None)
                    continue
                baseline = self._baseline_for(route, version)
                condition = failure.condition
                if baseline is None and not (
                    condition in retry_on or ("5xx" in retry_on and condition == "unavailable")
                ):
                    if answer is not None:
                        return answer, worker, served
                    raise failure
                try:
                    chosen = balancer.pick(
                        route.model, baseline or version, exclude=unreachable if baseline else tried
                    )
                except NoReadyWorker:
                    if answer is not None:
                        return answer, worker, served  # nowhere else to go: its own answer
                    raise
                if not self.budget.try_acquire_retry():
                    self.metrics.retries.labels(route.model, version, "denied").inc()
                    if answer is not None:
                        return answer, worker, served
                    raise failure
                retrying = True
                self.metrics.retries.labels(route.model, version, "allowed").inc()
                log_retry(inbound, route.model, version, worker, failure, baseline)
                if baseline is not None:
                    version, tried = baseline, set(unreachable)
                else:
                    tried.add(worker)
        finally:
            if retrying:  # the deadline check for a retry raised
                self.budget.retry_finished()
            self.budget.request_finished()

    async def _attempt(
        self,
        transport: Transport,
        attempt: Attempt,
        headers: dict[str, str],
        body: bytes,
        remaining: float,
        inbound: Inbound,
    ) -> Reply:
        """One send to ``attempt.worker``, bracketed by the balancer's ``started`` and
        ``finished`` (with the outcome) and registered in `in_flight` meanwhile.

        Raises `BackendUnavailable` (``timeout`` when ``attempt_timeout_s`` ran out first)
        or `DeadlineExceeded` when the client's remaining time did."""
        balancer = self.table.balancer
        counted = self.table.counted
        worker = attempt.worker
        limit = self.settings.attempt_timeout_s
        own_limit = 0 < limit < remaining
        timeout = limit if own_limit else remaining
        inbound.worker = worker
        inbound.attempts += 1
        span = None
        if inbound.span is not None:
            span = attempt_span(self.tracer, inbound, worker)
            headers = {**headers, "traceparent": tracing.traceparent(span)}
        self.in_flight.add(attempt)
        balancer.started(worker)
        sent = time.monotonic()
        outcome = Outcome.CANCELLED
        try:
            reply = await transport.send(
                worker, attempt.model, attempt.version, headers, body, timeout, attempt
            )
        except BackendUnavailable:
            outcome = Outcome.UNAVAILABLE
            raise
        except DeadlineExceeded:
            if own_limit:
                outcome = Outcome.UNAVAILABLE
                raise BackendUnavailable(
                    f"worker {worker} did not answer within the attempt timeout of "
                    f"{limit * 1000:.0f} ms",
                    "timeout",
                ) from None
            # NOTE: a client's short deadline says nothing about the worker's health.
            client_bound = remaining < self.settings.request_timeout_s
            outcome = Outcome.CANCELLED if client_bound else Outcome.UNAVAILABLE
            raise
        else:
            if reply.status < 500:
                outcome = Outcome.OK
            else:
                outcome = Outcome.UNAVAILABLE if reply.status == 503 else Outcome.FAILURE
            return reply
        finally:
            elapsed = time.monotonic() - sent
            self.in_flight.discard(attempt)
            balancer.finished(worker, elapsed, outcome)
            if span is not None:
                span.set_attribute("modelgate.outcome", outcome.value)
                span.end()
            if outcome is not Outcome.CANCELLED and (attempt.model, attempt.version) in counted:
                self.outcomes.record(
                    attempt.model, attempt.version, outcome is not Outcome.OK, elapsed
                )

    def worker_unready(self, worker: str, model: str, version: str) -> None:
        """Probes found ``model``@``version`` unready on ``worker``: abandon the attempts in
        flight there for it, where they can be retried (the `Prober`'s ``on_unready``)."""
        self._abandon_soon(worker, model, version, "probes found it unready")

    def worker_ejected(self, worker: str) -> None:
        """The balancer ejected ``worker``: abandon its attempts in flight, where they can
        be retried (called from the balancer's ``on_eject`` hook)."""
        self._abandon_soon(worker, None, None, "it was ejected")

    def _abandon_soon(
        self, worker: str, model: str | None, version: str | None, reason: str
    ) -> None:
        # NOTE: deferred: the news arrives inside the balancer's or the prober's own calls,
        # and abandoning picks another worker.
        if "unready" in self.settings.retry_on and any(self.in_flight.on(worker)):
            asyncio.get_running_loop().call_soon(self._abandon, worker, model, version, reason)

    def _abandon(self, worker: str, model: str | None, version: str | None, reason: str) -> None:
        decisions = self.in_flight.move(
            self.table.balancer, self.budget, worker, model, version, f"{worker} {reason}"
        )
        for attempt, moved in decisions:
            outcome = "allowed" if moved else "denied"
            self.metrics.retries.labels(attempt.model, attempt.version, outcome).inc()

    def _baseline_for(self, route: Route, version: str) -> str | None:
        """The baseline to retry a failed attempt on: only while ``version`` is the candidate
        of an active rollout, the traffic policy chose it (a pin is never served by another
        version), the baseline may serve the request's reference (`_may_serve`) and has a
        ready worker."""
        baseline = self.table.baselines.get((route.model, version))
        if (
            baseline is None
            or version != route.version
            or not route.route.startswith("arm:")
            or not self._may_serve(route, baseline)
            or not self.table.balancer.has_ready(route.model, baseline)
        ):
            return None
        return baseline

    def _may_serve(self, route: Route, baseline: str) -> bool:
        """A candidate of the reference, or, for a request naming no version, any version
        the policy could name (not yanked): at a 100% step the policy's one arm is the
        candidate, and its failures still go to the baseline."""
        if any(c.version == baseline for c in route.resolution.candidates):
            return True
        snapshot = self.table.snapshot
        if route.resolution.kind != "default" or snapshot is None:
            return False
        view = snapshot.models.get(route.model)
        info = view.find(baseline) if view is not None else None
        return info is not None and info.servable

    async def get(self, model: str, reference: str | None, suffix: str) -> tuple[Reply, Route, str]:
        """Model metadata from a worker serving the resolved version (no retries)."""
        route = self.table.route(model, reference, None)
        worker = self.pick(self.http, model, route.version, set(self.http.unreachable))
        url = self.table.urls[worker] + self.table.model_path(worker, model, route.version) + suffix
        reply = await self.forwarder.send(
            "GET", url, body=None, headers={}, timeout_s=self.settings.request_timeout_s
        )
        if worker in self.table.external and not suffix:
            reply = rename_metadata(reply, model, route.version)
        return reply, route, worker
