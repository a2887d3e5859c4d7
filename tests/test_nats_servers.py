"""`NATS_URL` names one server or the nodes of a cluster."""

from __future__ import annotations

import pytest

from services.stack import free_port
from shared.config import Settings
from shared.transport.nats_connection import close, connect, nats_servers
from tests.support import nats_url


def test_one_url_or_several_separated_by_commas() -> None:
    assert nats_servers("nats://127.0.0.1:4222") == ["nats://127.0.0.1:4222"]
    assert nats_servers(" nats://a:4222, nats://b:4222 ,nats://c:4222,") == [
        "nats://a:4222",
        "nats://b:4222",
        "nats://c:4222",
    ]
    with pytest.raises(ValueError):
        nats_servers(" , ")


@pytest.mark.services
async def test_a_process_connects_although_the_first_node_is_down() -> None:
    settings = Settings(nats_url=f"nats://127.0.0.1:{free_port()},{nats_url()}")
    client = await connect(settings, "barnebro-test-servers")
    try:
        assert client.is_connected
    finally:
        await close(client)
