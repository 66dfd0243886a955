"""One inference request as the gateway's access log and traces see it.

Each front end (OIP REST, gRPC) makes an `Inbound` when a request arrives: its request id
(the client's ``X-Request-Id`` when valid, else a new one: `modelgate.core.accesslog`),
the client's W3C ``traceparent`` and its arrival time. The data plane fills in what served
it (route, worker, attempts) and its span; `log_request` then writes the one access line of
the request (`ACCESS_LOG`), whatever its outcome, refusals included, and ends its span.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

from modelgate.core.accesslog import AccessLog, request_id

if TYPE_CHECKING:
    from gateway.errors import BackendUnavailable
    from gateway.routing import Route

__all__ = ["ACCESS_LOG", "Inbound", "attempt_span", "log_request", "log_retry"]

log = logging.getLogger("modelgate.gateway")

#: ``retries`` is attempts - 1; ``reference`` the version constraint as the client sent it
#: (null: none, the model's traffic policy); ``error`` the gateway's own refusal, if any.
ACCESS_LOG = AccessLog(
    "modelgate.access",
    "request",
    (
        "request_id",
        "protocol",
        "model",
        "reference",
        "version",
        "arm",
        "worker",
        "status",
        "duration_ms",
        "retries",
        "error",
    ),
)


@dataclass(slots=True)
class Inbound:
    """What is known of one request so far (see the module docstring)."""

    request_id: str
    traceparent: str | None
    started: float
    protocol: str = "http"
    route: Route | None = None
    worker: str | None = None
    attempts: int = 0
    #: The request's span (`opentelemetry.trace.Span`) while tracing is on.
    span: Any = None

    @classmethod
    def of(cls, headers: Mapping[str, str], protocol: str = "http") -> Inbound:
        """From the request's (lower-case) headers or gRPC metadata."""
        return cls(
            request_id(headers.get("x-request-id")),
            headers.get("traceparent"),
            time.monotonic(),
            protocol,
        )


def log_request(
    inbound: Inbound, model: str | None, reference: str | None, status: int, error: str | None
) -> None:
    """The request's one access line, and the end of its span."""
    route = inbound.route
    elapsed_ms = round((time.monotonic() - inbound.started) * 1000, 3)
    retries = max(inbound.attempts - 1, 0)
    ACCESS_LOG.write(
        (
            inbound.request_id,
            inbound.protocol,
            model,
            reference,
            route.version if route is not None else None,
            route.route if route is not None else None,
            inbound.worker,
            status,
            elapsed_ms,
            retries,
            error,
        )
    )
    span = inbound.span
    if span is not None:
        _end_span(span, inbound, model, status, retries)


def _end_span(span: Any, inbound: Inbound, model: str | None, status: int, retries: int) -> None:
    route = inbound.route
    span.set_attribute("modelgate.request_id", inbound.request_id)
    if model:
        span.set_attribute("modelgate.model", model)
    if route is not None:
        span.set_attribute("modelgate.version", route.version)
        span.set_attribute("modelgate.arm", route.route)
    if inbound.worker is not None:
        span.set_attribute("modelgate.worker", inbound.worker)
    span.set_attribute("modelgate.retries", retries)
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))
    span.end()


def attempt_span(tracer: Any, inbound: Inbound, worker: str) -> Any:
    """A child of the request's span for its attempt on ``worker`` (the latest, counted)."""
    return tracer.start_span(
        "attempt",
        context=set_span_in_context(inbound.span),
        kind=SpanKind.CLIENT,
        attributes={"modelgate.worker": worker, "modelgate.attempt": inbound.attempts},
    )


def log_retry(
    inbound: Inbound,
    model: str,
    version: str,
    worker: str,
    failure: BackendUnavailable,
    baseline: str | None,
) -> None:
    """The ``request.retry`` event: ``worker`` failed, the request goes elsewhere."""
    where = f"on the rollout's baseline {baseline}" if baseline else "elsewhere"
    log.info(
        "retrying %s@%s %s: %s",
        model,
        version,
        where,
        failure,
        extra={
            "event": "request.retry",
            "request_id": inbound.request_id,
            "model": model,
            "version": version,
            "worker": worker,
            "condition": failure.condition,
            "baseline": baseline,
        },
    )
