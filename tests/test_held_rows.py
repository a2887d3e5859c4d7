"""A write that rests on another record holds it: the record is not deleted before the
write commits, and a deletion under way makes the write find it gone.

On PostgreSQL (SQLite has a single writer). A care order rests on its holder, a
barnevernstjeneste the register keeps while it holds an open order; the deletion's check
and the care order's write would otherwise each miss the other (`shared.store.write_locks
.held`). A deletion locks the row for update, as every write of a resource does.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from shared.store.schema import create_schema
from shared.store.write_locks import held, locked_row
from tests.support import schema_database

pytestmark = pytest.mark.services

STARTED = "2026-12-07T00:00:00.000000Z"


async def _delete(db: Any, gate: asyncio.Event | None = None) -> None:
    async with db.transaction() as conn:
        assert await locked_row(conn, "Organization", "holder") is not None
        await conn.execute(
            "UPDATE resources SET deleted = 1, version = version + 1"
            " WHERE res_type = 'Organization' AND res_id = 'holder'"
        )
        if gate is not None:
            await gate.wait()


async def test_a_held_record_is_deleted_only_after_the_write_and_then_found_gone() -> None:
    async with schema_database("t_held") as db:
        await create_schema(db)
        async with db.transaction() as conn:
            await conn.execute(
                "INSERT INTO resources (res_type, res_id, version, last_updated, deleted, body)"
                " VALUES ('Organization', 'holder', 1, ?, 0, ?)",
                STARTED,
                orjson.dumps({"resourceType": "Organization", "id": "holder"}),
            )

        async with db.transaction() as writing:
            assert await held(writing, "Organization", "holder")
            deletion = asyncio.create_task(_delete(db))
            await asyncio.sleep(0.5)
            assert not deletion.done(), "the deletion waits for the write that holds the record"
        await asyncio.wait_for(deletion, 10)

        async with db.transaction() as writing:
            assert not await held(writing, "Organization", "holder")

        async with db.transaction() as conn:
            await conn.execute("UPDATE resources SET deleted = 0 WHERE res_id = 'holder'")
        gate = asyncio.Event()
        deletion = asyncio.create_task(_delete(db, gate))
        await asyncio.sleep(0.3)
        async with db.transaction() as writing:
            holding = asyncio.create_task(held(writing, "Organization", "holder"))
            await asyncio.sleep(0.5)
            assert not holding.done(), "the write waits for the deletion under way"
            gate.set()
            await asyncio.wait_for(deletion, 10)
            assert not await asyncio.wait_for(holding, 10), "and finds the record gone"
