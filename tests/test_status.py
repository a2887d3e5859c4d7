"""`barnebro status` sees every service, its outbox, the consumers and the dead letters."""

from __future__ import annotations

import pytest

from services.operator.status import gather, report
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
