"""Processes start in any order: a service waits for NATS instead of exiting."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from services.directory import directory_spec
from shared.patience import transient
from shared.runtime import ServiceRuntime
from tests.servers import NatsProcess
from tests.support import test_settings as make_settings

pytestmark = pytest.mark.services


async def test_a_service_started_before_nats_waits_for_it(tmp_path: Path) -> None:
    nats = NatsProcess(tmp_path / "nats")
    settings = make_settings(tmp_path, "sqlite", nats.url)
    runtime = ServiceRuntime(directory_spec(settings), settings)
    starting = asyncio.create_task(runtime.start())
    try:
        await asyncio.sleep(1.5)
        assert not starting.done(), "it waits while NATS is down"
        nats.start()
        await asyncio.wait_for(starting, 30)
        assert runtime.nc is not None and runtime.nc.is_connected
    finally:
        if not starting.done():
            starting.cancel()
        await runtime.stop()
        nats.stop()


def test_only_an_outage_is_waited_out() -> None:
    import nats.errors

    from shared.fhir.errors import error

    assert transient(nats.errors.NoServersError())
    assert transient(ConnectionRefusedError())
    assert transient(error(503, "transient", "the database is unavailable"))
    assert not transient(error(400, "invalid", "a wrong setting"))
    assert not transient(ValueError("a bug"))
