"""Telemetry set-up: OTLP export only when configured, JSON logs carrying trace ids."""

from __future__ import annotations

import logging

import orjson
import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider

from shared.config import Settings
from shared.telemetry import JsonFormatter, setup_tracing, span, trace_context, tracing


def test_no_endpoint_means_no_tracer_provider() -> None:
    assert setup_tracing(Settings(otlp_endpoint=""), "barnebro-test") is None


def test_an_endpoint_installs_an_otlp_exporting_provider(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    installed: list[TracerProvider] = []
    monkeypatch.setattr(trace, "set_tracer_provider", installed.append)
    provider = setup_tracing(Settings(otlp_endpoint="http://127.0.0.1:4318"), "barnebro-gateway")
    assert provider is not None and installed == [provider]
    assert provider.resource.attributes["service.name"] == "barnebro-gateway"
    processors = provider._active_span_processor._span_processors
    assert any(isinstance(p.span_exporter, OTLPSpanExporter) for p in processors)  # type: ignore[attr-defined]
    provider.shutdown()


def test_json_log_lines_carry_the_trace_and_span_ids() -> None:
    provider = TracerProvider()
    tracer = provider.get_tracer("test")
    formatter = JsonFormatter()
    record = logging.LogRecord("barnebro", logging.WARNING, __file__, 1, "hello %s", ("x",), None)
    with tracer.start_as_current_span("work") as span:
        line = orjson.loads(formatter.format(record))
        context = span.get_span_context()
    assert line["message"] == "hello x"
    assert line["level"] == "WARNING"
    assert line["trace_id"] == format(context.trace_id, "032x")
    assert line["span_id"] == format(context.span_id, "016x")
    outside = orjson.loads(formatter.format(record))
    assert "trace_id" not in outside


def test_without_a_provider_no_span_is_made_and_nothing_is_carried_without_a_trace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(trace, "get_tracer_provider", trace.ProxyTracerProvider)
    assert not tracing()
    for parent in (None, {}, {"traceparent": "not a trace"}):
        with span(trace.get_tracer("test"), "work", parent=parent) as current:
            assert not current.is_recording()
            assert not current.get_span_context().is_valid
            assert trace_context() == {}


def test_without_a_provider_a_trace_the_caller_sent_is_carried_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As the no-op tracer did: logs, a 500's text and what the request causes name the
    caller's trace, though nothing is recorded."""
    monkeypatch.setattr(trace, "get_tracer_provider", trace.ProxyTracerProvider)
    sent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with span(trace.get_tracer("test"), "work", parent={"traceparent": sent}) as current:
        assert not current.is_recording()
        assert format(current.get_span_context().trace_id, "032x") == sent.split("-")[1]
        assert trace.get_current_span() is current
        assert trace_context()["traceparent"] == sent
    assert not trace.get_current_span().get_span_context().is_valid


def test_with_a_provider_a_span_continues_the_trace_it_is_given_and_carries_it_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider = TracerProvider()
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    assert tracing()
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    parent = {"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"}
    with span(provider.get_tracer("test"), "work", parent=parent) as current:
        assert current.is_recording()
        assert format(current.get_span_context().trace_id, "032x") == trace_id
        carried = trace_context()["traceparent"]
        assert carried.split("-")[1] == trace_id
        assert carried.split("-")[2] == format(current.get_span_context().span_id, "016x")
    provider.shutdown()
