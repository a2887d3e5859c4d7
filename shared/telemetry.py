"""Tracing and structured logs for every process.

Spans are exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set and are
otherwise not recorded at all: then the request path does not even make them (`span`,
`trace_context`), which would cost every request and event a few per cent of its CPU for
spans that record nothing; a `traceparent` a caller sends is still carried on. Logs are
one JSON object per line carrying the current trace and span ids, so a log line can be
found from a trace and the other way round.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from shared.config import Settings


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            entry["trace_id"] = format(context.trace_id, "032x")
            entry["span_id"] = format(context.span_id, "016x")
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def setup_logging(settings: Settings, process: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {process} %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def setup_tracing(settings: Settings, service_name: str) -> TracerProvider | None:
    """Install an OTLP-exporting tracer provider when an endpoint is configured."""
    if not settings.otlp_endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


TRACEPARENT = "traceparent"
"""The W3C Trace Context header a caller continues its trace with."""


def tracing() -> bool:
    """Whether this process records spans: a tracer provider is installed (by
    `setup_tracing`, or by a test). Without one, every span would be a no-op."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def span(
    tracer: trace.Tracer,
    name: str,
    *,
    kind: trace.SpanKind = trace.SpanKind.INTERNAL,
    parent: Mapping[str, str] | None = None,
    attributes: dict[str, Any] | None = None,
) -> contextlib.AbstractContextManager[trace.Span]:
    """`tracer.start_as_current_span(name, ...)`, its parent read from the trace context in
    `parent` (headers, or an event's `trace_context`) when given. When nothing is traced,
    no span is made: a trace the caller sent (`traceparent`) is made current as it came,
    so that logs, error texts and the requests and events this one causes still carry it,
    as they did with the no-op tracer; otherwise nothing changes."""
    if not tracing():
        if parent is None or TRACEPARENT not in parent:
            return contextlib.nullcontext(trace.INVALID_SPAN)
        sent = trace.get_current_span(propagate.extract(parent))
        if not sent.get_span_context().is_valid:
            return contextlib.nullcontext(trace.INVALID_SPAN)
        return trace.use_span(sent, end_on_exit=False)
    context = propagate.extract(parent) if parent is not None else None
    return tracer.start_as_current_span(name, context=context, kind=kind, attributes=attributes)


def trace_context() -> dict[str, str]:
    """The current span's trace context, to carry in a message's headers or an event (empty
    when no trace is current)."""
    carrier: dict[str, str] = {}
    if trace.get_current_span().get_span_context().is_valid:  # cheaper than `tracing()`
        propagate.inject(carrier)
    return carrier
