"""Shared fixtures: a running stack per test on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.runtime import ServiceRuntime
from tests.consent_world import KINDS, World, organisation
from tests.journal_service import journal_spec
from tests.support import Stack, drop_test_resources, nats_url, start_stack, stop_stack
from tests.support import test_settings as make_settings


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
async def stack(tmp_path: Path, backend: str) -> AsyncIterator[Stack]:
    settings = make_settings(tmp_path, backend, nats_url())
    running = await start_stack(settings)
    try:
        yield running
    finally:
        await stop_stack(running)
        await drop_test_resources(settings)


@pytest.fixture
async def world(stack: Stack) -> AsyncIterator[World]:
    """The stack plus the journal test service and one organisation of each kind."""
    journal = ServiceRuntime(journal_spec(), stack.settings)
    await journal.start()
    try:
        organisations = {}
        for orgnr in KINDS:
            reply = await stack.call("POST", "Organization", organisation(orgnr))
            assert reply.status == 201, reply.body
            organisations[orgnr] = reply.json()["id"]
        yield World(stack, journal, organisations)
    finally:
        await journal.stop()
