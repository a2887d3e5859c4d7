"""Domain events survive a NATS restart (none lost, none duplicated) and one trace runs from
the HTTP request to the outbox publish."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.transport.wire import Caller, FhirRequest
from tests.servers import NatsProcess
from tests.support import (
    Stack,
    drop_test_resources,
    outbox_ids,
    start_stack,
    stop_stack,
    stream_events,
    unsent,
    wait_for,
)
from tests.support import test_settings as make_settings


@pytest.fixture
async def stack_on_own_nats(
    tmp_path: Path, backend: str
) -> AsyncIterator[tuple[Stack, NatsProcess]]:
    server = NatsProcess(tmp_path / "nats-store")
    server.start()
    settings = make_settings(tmp_path, backend, server.url)
    running = await start_stack(settings)
    try:
        yield running, server
    finally:
        await stop_stack(running)
        await drop_test_resources(settings)
        server.stop()


async def test_nats_restart_while_writing_loses_and_duplicates_no_event(
    stack_on_own_nats: tuple[Stack, NatsProcess],
) -> None:
    stack, server = stack_on_own_nats
    assert stack.directory.router is not None
    service = stack.directory.router
    written = 0

    async def writer() -> None:
        nonlocal written
        for i in range(150):
            request = FhirRequest(
                interaction="create",
                resource_type="Practitioner",
                base_url="http://test/fhir",
                # a barnebro service's own write: a client's request would first ask the
                # consent bucket, which cannot answer while NATS is down (503), and the
                # writes must go on for their events to wait in the outbox
                caller=Caller(credential="service", client_id="writer", scopes=["system/*.cruds"]),
            )
            body = b'{"resourceType": "Practitioner", "name": [{"family": "W%d"}]}' % i
            response = await service.handle(request, body)
            assert response.status == 201
            written += 1
            await asyncio.sleep(0.01)

    async def enough_written() -> bool:
        return written >= 30

    async def drained() -> bool:
        return await unsent(stack) == 0

    writing = asyncio.create_task(writer())
    await wait_for(enough_written)
    server.stop()
    stopped_at = written
    await asyncio.sleep(1.0)
    assert await unsent(stack) > 0, "writes went on while NATS was down; their events wait"
    server.start()
    await writing
    assert written == 150 and stopped_at < 150
    await wait_for(drained, limit=30)

    events = await stream_events(stack)
    msg_ids = [msg_id for msg_id, _ in events]
    assert len(msg_ids) == len(set(msg_ids)), "an event id was published twice"
    assert all(msg_id == event.id for msg_id, event in events)
    assert set(msg_ids) == await outbox_ids(stack)
    assert sum(1 for _, e in events if e.type == "directory.Practitioner.created") == 150


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_one_trace_from_http_through_nats_into_the_database_and_outbox(
    stack: Stack,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    if trace.get_tracer_provider() is not provider:
        pytest.fail("another test installed a tracer provider first")
    try:
        await _check_one_trace(stack, exporter)
    finally:
        provider.shutdown()


async def _check_one_trace(stack: Stack, exporter: InMemorySpanExporter) -> None:
    # The operator registers the caller's organisation first: its own requests and
    # events are traces of their own.
    await stack.admit("974760673", "bup")
    created = await stack.call("POST", "Practitioner", {"resourceType": "Practitioner"})
    assert created.status == 201
    root = next(s for s in exporter.get_finished_spans() if s.name == "POST /fhir/Practitioner")
    assert root.context is not None
    trace_id = root.context.trace_id

    def names_in_trace() -> set[str]:
        spans = exporter.get_finished_spans()
        return {s.name for s in spans if s.context is not None and s.context.trace_id == trace_id}

    async def published() -> bool:
        return "outbox publish" in names_in_trace()

    await wait_for(published)
    spans = exporter.get_finished_spans()
    in_trace = names_in_trace()
    # PostgreSQL stores a version with one call (`shared.store.version_write`).
    stored = "db store_version_raising" if stack.settings.database_url else "db insert"
    assert {
        "POST /fhir/Practitioner",
        "send create",
        "directory handle",
        stored,
        "outbox publish",
    } <= in_trace
    handle = next(
        s
        for s in spans
        if s.name == "directory handle" and s.context is not None and s.context.trace_id == trace_id
    )
    assert handle.kind == trace.SpanKind.SERVER
    assert handle.parent is not None
    assert handle.parent.trace_id == trace_id
