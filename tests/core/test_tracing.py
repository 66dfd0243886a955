"""Whether the environment turns tracing on (`modelgate.core.tracing`), and the W3C
``traceparent`` in and out."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import get_current_span

from modelgate.core import tracing
from modelgate.core.tracing import TracingSettings

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize(
    ("env", "exporter"),
    [
        ({}, None),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "otlp"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": "console"}, "console"),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, None),
    ],
)
def test_the_standard_variables_choose_the_exporter(
    env: dict[str, str], exporter: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert TracingSettings().exporter() == exporter


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "jaeger"}, 'OTEL_TRACES_EXPORTER="jaeger"'),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            'OTEL_EXPORTER_OTLP_PROTOCOL="grpc"',
        ),
    ],
)
def test_an_unsupported_setting_is_refused_by_name(
    env: dict[str, str], named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=named):
        TracingSettings().exporter()


def test_off_by_default_there_is_no_tracer() -> None:
    assert tracing.configure_tracing("x", TracingSettings()) is False
    assert tracing.tracer("modelgate.test") is None
    provider = TracerProvider()
    tracing.install(provider)
    try:
        assert tracing.tracer("modelgate.test") is not None
    finally:
        tracing.install(None)


def test_otlp_installs_a_provider_with_the_service_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")  # never reached
    assert tracing.configure_tracing("modelgate-test") is True
    provider = tracing._provider
    try:
        assert provider is not None
        assert provider.resource.attributes["service.name"] == "modelgate-test"
        assert tracing.tracer("modelgate.test") is not None
    finally:
        tracing.install(None)
        if provider is not None:
            provider.shutdown()


@pytest.mark.parametrize("bad", [None, "", "garbage", f"00-{'0' * 32}-00f067aa0ba902b7-01"])
def test_an_invalid_traceparent_starts_a_new_trace(bad: str | None) -> None:
    assert tracing.parent(bad) is None


def test_a_traceparent_is_continued_and_passed_on() -> None:
    context = tracing.parent(f"00-{TRACE}-00f067aa0ba902b7-01")
    assert context is not None
    assert get_current_span(context).get_span_context().trace_id == int(TRACE, 16)
    span = TracerProvider().get_tracer("t").start_span("s", context=context)
    sent = tracing.traceparent(span)
    assert sent.startswith(f"00-{TRACE}-")
    assert sent.endswith("-01")
    assert sent.split("-")[2] == f"{span.get_span_context().span_id:016x}"
