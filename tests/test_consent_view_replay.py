"""A service's consent view is loaded when its watch says it has replayed every state. A
watch that never says so (a delivery lost while it was being set up) is begun again,
rather than failing the service's start after LOAD_TIMEOUT."""

from __future__ import annotations

import os
import uuid
from typing import Any

import nats
import pytest
from nats.js.kv import KeyValue

from shared.access import view as view_module
from shared.access.state import PatientAccessState
from shared.access.view import ConsentView

pytestmark = pytest.mark.services


class WithoutReplayMark:
    """A real watch whose end-of-replay mark is lost."""

    def __init__(self, watcher: Any) -> None:
        self._watcher = watcher

    async def stop(self) -> None:
        await self._watcher.stop()

    def __aiter__(self) -> WithoutReplayMark:
        return self

    async def __anext__(self) -> Any:
        while True:
            entry = await self._watcher.__anext__()
            if entry is not None:
                return entry


async def test_a_watch_that_never_ends_its_replay_is_begun_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nc = await nats.connect(os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    bucket = f"test_view_{uuid.uuid4().hex[:10]}"
    js = nc.jetstream()
    try:
        kv = await js.create_key_value(bucket=bucket)
        state = PatientAccessState(patient="p1", related=["910000012"])
        await kv.put("p1", state.model_dump_json().encode())
        watches: list[str] = []
        real_watchall = KeyValue.watchall

        async def watchall(self: KeyValue, **kwargs: Any) -> Any:
            watcher = await real_watchall(self, **kwargs)
            watches.append("lost" if not watches else "whole")
            return WithoutReplayMark(watcher) if len(watches) == 1 else watcher

        monkeypatch.setattr(KeyValue, "watchall", watchall)
        monkeypatch.setattr(view_module, "REPLAY_PATIENCE", 0.5)
        monkeypatch.setattr(view_module, "LOAD_TIMEOUT", 10.0)
        mirror = ConsentView(nc, bucket)
        await mirror.start()
        try:
            # A busy machine may outlast the patience once more: then a third watch, whole too.
            assert watches[:2] == ["lost", "whole"] and set(watches[1:]) == {"whole"}
            loaded = mirror.state("p1")
            assert loaded is not None and list(loaded.related) == ["910000012"]
        finally:
            await mirror.stop()
    finally:
        await js.delete_key_value(bucket)
        await nc.close()
