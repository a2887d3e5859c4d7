"""The test stack's gateway finds another port when the one chosen for it is taken before
it binds (a race with outgoing connections' local ports and other workers' servers)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.support import drop_test_resources, nats_url, start_stack, stop_stack
from tests.support import test_settings as make_settings

pytestmark = pytest.mark.services


async def test_a_taken_port_is_replaced_by_a_free_one(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "sqlite", nats_url())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", settings.http_port))
        taken.listen()
        chosen = settings.http_port
        stack = await start_stack(settings)
        try:
            assert settings.http_port != chosen
            reply = await stack.session.get(f"http://127.0.0.1:{settings.http_port}/healthz")
            assert reply.status == 200
            reply.release()
        finally:
            await stop_stack(stack)
            await drop_test_resources(settings)
