"""A service stopping while NATS restarts still stops.

Closing a connection that is reconnecting cannot drain it, and what was published while
it reconnected cannot be sent: `close` closes it all the same instead of raising from
the stop. The fault starts a nats-server of the test's own and stops it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from shared.config import Settings
from shared.transport.nats_connection import close, connect
from tests.servers import NatsProcess

pytestmark = pytest.mark.services


async def test_a_connection_closed_while_reconnecting_with_messages_waiting_closes(
    tmp_path: Path,
) -> None:
    server = NatsProcess(tmp_path / "nats-store")
    server.start()
    try:
        client = await connect(Settings(nats_url=server.url), "barnebro-test-close")
    finally:
        server.stop()
    for _ in range(250):
        if client.is_reconnecting:
            break
        await asyncio.sleep(0.02)
    assert client.is_reconnecting
    await client.publish("barnebro-test-close.waiting", b"published while reconnecting")
    await close(client)
    assert client.is_closed
