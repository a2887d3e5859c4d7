"""A service's own requests are never held up by clients' requests that wait for them.

The directory answers a change of authority once the consent service has judged the
child again, and the consent service reads the child from the directory to judge it: a
burst of such writes filling every client place must not leave the consent service's
reads waiting behind them (each write would wait its whole patience, for nothing). Past
the requests that may wait, and when the instance stops, a request is refused at once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import nats
import pytest

from shared.transport import service_host
from shared.transport.service_host import Handler, ServiceHost
from shared.transport.wire import (
    REQUEST_HEADER,
    Caller,
    FhirRequest,
    FhirResponse,
    decode_response,
    request_subject,
)
from tests.support import nats_url

pytestmark = pytest.mark.services
CLIENT_PLACES = 2
Ask = Callable[[str], Coroutine[Any, Any, FhirResponse]]


def request_of(credential: str) -> str:
    caller = Caller(credential=credential, client_id="test")
    request = FhirRequest(
        interaction="read", resource_type="Patient", id="p1", base_url="http://t", caller=caller
    )
    return request.model_dump_json()


@asynccontextmanager
async def hosted(handler: Handler, places: int) -> AsyncIterator[tuple[ServiceHost, Ask]]:
    """A directory host with `places` client places on real NATS, and how to ask it as a
    caller of a credential."""
    nc = await nats.connect(nats_url())
    prefix = f"places{uuid.uuid4().hex[:8]}"
    host = ServiceHost(nc, prefix=prefix, service="directory", resource_types=["Patient"],
                       handler=handler, max_concurrency=places)  # fmt: skip
    await host.start()

    async def ask(credential: str) -> FhirResponse:
        headers = {REQUEST_HEADER: request_of(credential)}
        reply = await nc.request(request_subject(prefix, "Patient"), b"", timeout=10,
                                 headers=headers)  # fmt: skip
        return decode_response(reply.data, reply.headers)

    try:
        yield host, ask
    finally:
        await host.stop()
        await nc.close()


async def test_a_service_request_is_served_while_clients_hold_every_place_waiting_for_it() -> None:
    judged = asyncio.Event()

    async def handler(request: FhirRequest, body: bytes) -> FhirResponse:
        if request.caller.credential == "service":
            judged.set()
            return FhirResponse(status=200, body=b"service")
        async with asyncio.timeout(5):  # the write waits for the service's judgement
            await judged.wait()
        return FhirResponse(status=200, body=b"client")

    async with hosted(handler, CLIENT_PLACES) as (_, ask):
        clients = [asyncio.create_task(ask("organisation")) for _ in range(CLIENT_PLACES + 3)]
        await asyncio.sleep(0.2)  # every client place taken, more clients waiting for one
        assert not judged.is_set()
        async with asyncio.timeout(2):
            assert (await ask("service")).body == b"service"
        async with asyncio.timeout(2):
            answers = await asyncio.gather(*clients)
        assert [a.body for a in answers] == [b"client"] * (CLIENT_PLACES + 3)


async def test_requests_beyond_those_that_may_wait_are_refused_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past `MAX_WAITING` requests waiting for a place, the next is a 503 with Retry-After
    at once, not a wait longer than its caller's; those waiting are still served."""
    monkeypatch.setattr(service_host, "MAX_WAITING", 1)
    release = asyncio.Event()

    async def handler(request: FhirRequest, body: bytes) -> FhirResponse:
        await release.wait()
        return FhirResponse(status=200, body=b"served")

    async with hosted(handler, 1) as (_, ask):
        try:
            running = asyncio.create_task(ask("organisation"))
            await asyncio.sleep(0.1)
            waiting = asyncio.create_task(ask("organisation"))
            await asyncio.sleep(0.1)
            async with asyncio.timeout(2):
                refused = await ask("organisation")
            assert refused.status == 503 and refused.headers.get("Retry-After") == "1"
            assert not running.done() and not waiting.done()
            release.set()
            async with asyncio.timeout(2):
                assert [r.status for r in await asyncio.gather(running, waiting)] == [200, 200]
        finally:
            release.set()


async def test_stopping_refuses_the_requests_still_waiting_and_finishes_those_under_way() -> None:
    release, started = asyncio.Event(), asyncio.Event()

    async def handler(request: FhirRequest, body: bytes) -> FhirResponse:
        started.set()
        await release.wait()
        return FhirResponse(status=200, body=b"served")

    async with hosted(handler, 1) as (host, ask):
        try:
            running = asyncio.create_task(ask("organisation"))
            async with asyncio.timeout(5):
                await started.wait()
            waiting = [asyncio.create_task(ask("organisation")) for _ in range(3)]
            await asyncio.sleep(0.2)
            stopping = asyncio.create_task(host.stop())
            async with asyncio.timeout(2):
                refused = await asyncio.gather(*waiting)
            assert [r.status for r in refused] == [503] * 3
            assert not running.done() and not stopping.done()
            release.set()
            async with asyncio.timeout(2):
                assert (await running).status == 200
                await stopping
        finally:
            release.set()
