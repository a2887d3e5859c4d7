"""`barnebro status` sees every service, its outbox, the consumers and the dead letters."""

from __future__ import annotations

import contextlib
import time

import pytest
from nats.js.errors import NotFoundError

from services.cli import main
from services.operator.status import gather, registered_services, report
from services.stack import free_port
from shared.transport.nats_connection import close, connect
from shared.transport.service_host import register_capabilities
from tests.nats_streams import own_streams
from tests.support import Stack

pytestmark = pytest.mark.services


async def test_status_shows_every_service_and_consumer(stack: Stack) -> None:
    nc = stack.gateway.gateway.nc if stack.gateway.gateway is not None else None
    assert nc is not None
    await stack.call("POST", "Practitioner", {"resourceType": "Practitioner"})
    found = await gather(nc, stack.settings)
    assert {"directory", "consent"} <= set(found.instances)
    for service, answers in found.instances.items():
        assert answers, f"{service}: an instance answers"
        assert all(a["ready"] and isinstance(a["outbox_backlog"], int) for a in answers)
    consumers = {c["consumer"] for c in found.consumers}
    assert "consent-audit-trail" in consumers and "consent-relation-watch" in consumers
    assert found.dead_letters == 0 and found.healthy
    printed = report(found)
    assert "directory: ready, outbox backlog" in printed and printed.endswith("healthy")


async def test_the_registered_services_are_its_keys_less_those_deleted() -> None:
    async with own_streams("status") as settings:
        nc = await connect(settings, "barnebro-test-status")
        js = nc.jetstream()
        try:
            for service in ("referral", "careplan", "directory"):
                await register_capabilities(nc, settings.registry_bucket, service, {"types": []})
            kv = await js.key_value(settings.registry_bucket)
            await kv.delete("careplan")
            assert await registered_services(js, settings) == ["directory", "referral"]
            await kv.purge("referral")
            assert await registered_services(js, settings) == ["directory"]
        finally:
            with contextlib.suppress(NotFoundError):
                await js.delete_key_value(settings.registry_bucket)
            await close(nc)


def test_status_answers_at_once_when_nats_cannot_be_reached(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A probe running `barnebro status` gets an answer, not a command that waits for
    ever (it used to retry the connection without end)."""
    monkeypatch.setenv("NATS_URL", f"nats://127.0.0.1:{free_port()}")
    began = time.monotonic()
    with pytest.raises(SystemExit) as ended:
        main(["status"])
    assert ended.value.code == 1
    assert time.monotonic() - began < 30
    assert "NATS cannot be reached" in capsys.readouterr().out
