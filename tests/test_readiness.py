"""`/readyz` says when every service can serve; `barnebro up` waits for it."""

from __future__ import annotations

import pytest

from shared.transport.service_host import ServiceHost, register_capabilities
from shared.transport.wire import FhirRequest, FhirResponse
from tests.support import Stack

pytestmark = pytest.mark.services


async def test_ready_once_every_service_says_it_can_serve(stack: Stack) -> None:
    reply = await stack.call("GET", f"http://127.0.0.1:{stack.settings.http_port}/readyz",
                             authenticated=False)  # fmt: skip
    assert reply.status == 200, reply.body
    states = reply.json()["services"]
    assert states and set(states.values()) == {"ready"}, states


async def test_a_service_still_loading_keeps_the_stack_unready(stack: Stack) -> None:
    """A service that answers but has not loaded its consent mirror is `starting`."""
    settings = stack.settings
    nc = stack.gateway.gateway.nc if stack.gateway.gateway is not None else None
    assert nc is not None

    async def unused(request: FhirRequest, body: bytes) -> FhirResponse:
        return FhirResponse(status=500)

    loading = ServiceHost(
        nc, prefix=settings.nats_prefix, service="loading", resource_types=[],
        handler=unused, ready=lambda: False,
    )  # fmt: skip
    await loading.start()
    try:
        await register_capabilities(nc, settings.registry_bucket, "loading", {"resources": []})
        url = f"http://127.0.0.1:{settings.http_port}/readyz"
        reply = await stack.call("GET", url, authenticated=False)
        assert reply.status == 503, reply.body
        assert reply.json()["services"]["loading"] == "starting"
        assert reply.json()["services"]["directory"] == "ready"
    finally:
        await loading.stop()
        kv = await nc.jetstream().key_value(settings.registry_bucket)
        await kv.delete("loading")
