"""The outbox relay stops when asked, whenever the request comes."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from shared.store.database import SqliteDatabase
from shared.store.outbox import OutboxRelay
from shared.store.schema import create_schema


async def test_relay_stops_on_cancel_even_as_a_wake_up_arrives(tmp_path: Path) -> None:
    """On Python 3.11, asyncio.wait_for could lose a cancellation that arrived while the
    awaited event was being set, leaving stop() waiting for ever."""
    db = await SqliteDatabase.connect(tmp_path / "relay.sqlite3")
    await create_schema(db)

    async def publish(subject: str, payload: bytes, headers: dict[str, str]) -> None:
        raise AssertionError("nothing to publish")

    rng = random.Random(7)
    try:
        for _ in range(300):
            relay = OutboxRelay(db, publish, poll_interval=0.001, max_backoff=0.01, linger=0)
            task = asyncio.create_task(relay.run())
            await asyncio.sleep(rng.random() * 0.003)
            relay.notify()
            for _ in range(rng.randint(0, 3)):
                await asyncio.sleep(0)
            task.cancel()
            async with asyncio.timeout(5):
                done, _ = await asyncio.wait({task})
            assert done == {task} and task.cancelled()
    finally:
        await db.close()
