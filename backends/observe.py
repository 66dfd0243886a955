"""The worker's access log and spans: one line per inference request, and, while tracing is
on (`modelgate.core.tracing`), a span per request continuing the ``traceparent`` the
gateway sent and a span per batch, a child of its first request's span linked to all of
them.

The access line (``modelgate.worker.access``) carries the request id the gateway forwarded
(``X-Request-Id``, gRPC metadata ``x-request-id``; a new one when a client came direct
without one), so one request's gateway and worker lines are found by one id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace import Link, SpanKind, Status, StatusCode, set_span_in_context

from modelgate.core import tracing
from modelgate.core.accesslog import AccessLog, request_id

__all__ = ["WORKER_ACCESS", "Served", "batch_span"]

#: ``batch_size``: the rows of the batch the request ran in (1 unbatched; 0: it never ran).
WORKER_ACCESS = AccessLog(
    "modelgate.worker.access",
    "request",
    ("request_id", "protocol", "model", "version", "status", "duration_ms", "batch_size"),
)


@dataclass(slots=True)
class Served:
    """What the worker knows of one request while serving it; `finish` logs it."""

    request_id: str
    protocol: str
    #: The request's span (`opentelemetry.trace.Span`) while tracing is on.
    span: Any = None
    version: str | None = None
    batch_size: int = 0

    @classmethod
    def start(
        cls, tracer: Any, sent_id: str | None, traceparent: str | None, protocol: str, model: str
    ) -> Served:
        """A request arriving with the client's (the gateway's) id and trace context."""
        served = cls(request_id(sent_id), protocol)
        if tracer is not None:
            served.span = tracer.start_span(
                f"worker infer {model}",
                context=tracing.parent(traceparent),
                kind=SpanKind.SERVER,
                attributes={"modelgate.request_id": served.request_id, "modelgate.model": model},
            )
        return served

    def finish(self, model: str, status: int, duration_s: float) -> None:
        WORKER_ACCESS.write(
            (
                self.request_id,
                self.protocol,
                model,
                self.version,
                status,
                round(duration_s * 1000, 3),
                self.batch_size,
            )
        )
        span = self.span
        if span is not None:
            if self.version is not None:
                span.set_attribute("modelgate.version", self.version)
            span.set_attribute("modelgate.batch_size", self.batch_size)
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            span.end()


def batch_span(tracer: Any, spans: Sequence[Any], rows: int, model: str, version: str) -> Any:
    """The span of one batch run: a child of its first request's span, linked to each
    request's (None when no request of the batch is traced)."""
    traced = [s for s in spans if s is not None]
    if not traced:
        return None
    return tracer.start_span(
        "batch",
        context=set_span_in_context(traced[0]),
        links=[Link(s.get_span_context()) for s in traced],
        attributes={
            "modelgate.model": model,
            "modelgate.version": version,
            "modelgate.batch_size": rows,
            "modelgate.requests": len(spans),
        },
    )
