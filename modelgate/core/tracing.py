"""OpenTelemetry tracing of inference requests: off unless the environment turns it on.

Off (the default), `tracer` answers None and the request paths make no span at all (not
even the API's no-op ones). On, a process exports its spans with the OpenTelemetry SDK,
configured by the standard environment variables:
- ``OTEL_TRACES_EXPORTER``: ``otlp`` (OTLP over HTTP/protobuf), ``console`` (stdout) or
  ``none``; unset, ``otlp`` when an OTLP endpoint is set, else tracing is off.
- ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (default
  ``http://localhost:4318``), ``OTEL_EXPORTER_OTLP_HEADERS``, ``..._TIMEOUT``: read by the
  exporter itself. ``OTEL_EXPORTER_OTLP_PROTOCOL`` must be ``http/protobuf`` (the gRPC
  exporter is not shipped).
- ``OTEL_SERVICE_NAME`` (default ``modelgate-gateway`` / ``modelgate-worker``),
  ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER`` / ``..._ARG`` (default:
  ``parentbased_always_on``), ``OTEL_BSP_*`` (the batch processor), ``OTEL_SDK_DISABLED``.

A request's span continues the client's W3C ``traceparent`` (`parent`); what the gateway
sends a worker carries its attempt span's (`traceparent`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

__all__ = ["TracingSettings", "configure_tracing", "install", "parent", "traceparent", "tracer"]

_provider: TracerProvider | None = None


class TracingSettings(BaseSettings):
    """The standard OpenTelemetry variables that decide whether and where spans go."""

    model_config = SettingsConfigDict(extra="ignore")

    traces_exporter: str | None = Field(default=None, validation_alias="OTEL_TRACES_EXPORTER")
    endpoint: str | None = Field(default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    traces_endpoint: str | None = Field(
        default=None, validation_alias="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    protocol: str | None = Field(default=None, validation_alias="OTEL_EXPORTER_OTLP_PROTOCOL")
    traces_protocol: str | None = Field(
        default=None, validation_alias="OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
    )
    service_name: str | None = Field(default=None, validation_alias="OTEL_SERVICE_NAME")
    sdk_disabled: bool = Field(default=False, validation_alias="OTEL_SDK_DISABLED")

    def exporter(self) -> Literal["otlp", "console"] | None:
        """Which exporter the environment asks for; None: tracing off. Raises
        `ValueError` naming a value that is not supported."""
        if self.sdk_disabled:
            return None
        chosen = (self.traces_exporter or "").strip().lower()
        if not chosen:
            chosen = "otlp" if self.endpoint or self.traces_endpoint else "none"
        if chosen == "none":
            return None
        if chosen not in ("otlp", "console"):
            raise ValueError(
                f'OTEL_TRACES_EXPORTER="{self.traces_exporter}" is not supported; use otlp, '
                f"console or none"
            )
        protocol = (self.traces_protocol or self.protocol or "http/protobuf").strip()
        if chosen == "otlp" and protocol != "http/protobuf":
            raise ValueError(
                f'OTEL_EXPORTER_OTLP_PROTOCOL="{protocol}" is not supported; modelgate ships '
                f"the OTLP exporter over HTTP: use http/protobuf (port 4318)"
            )
        return chosen  # type: ignore[return-value]


def configure_tracing(default_service: str, settings: TracingSettings | None = None) -> bool:
    """Install an SDK tracer provider with the environment's exporter (see the module
    docstring); whether tracing is on. Raises `ValueError` for an unsupported setting."""
    settings = settings or TracingSettings()
    exporter = settings.exporter()
    if exporter is None:
        return False
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

    span_exporter: SpanExporter
    if exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        span_exporter = OTLPSpanExporter()
    else:
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        span_exporter = ConsoleSpanExporter()
    resource = Resource.create({SERVICE_NAME: settings.service_name or default_service})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(span_exporter))
    install(provider)
    return True


def install(provider: TracerProvider | None) -> None:
    """Make ``provider`` this process's (None: tracing off); `tracer` answers from it.
    Tests install one with an in-memory exporter."""
    global _provider
    _provider = provider


def tracer(name: str) -> Tracer | None:
    """A tracer of the installed provider, or None while tracing is off."""
    return None if _provider is None else _provider.get_tracer(name)


def parent(traceparent: str | None) -> Context | None:
    """The context a W3C ``traceparent`` header names (None: no valid one)."""
    if not traceparent:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    context = TraceContextTextMapPropagator().extract({"traceparent": traceparent})
    return context or None


def traceparent(span: Span) -> str:
    """The W3C ``traceparent`` that makes ``span`` the parent of the receiver's span."""
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
