"""`save_new` stores a batch of new resources exactly as `save` does one by one.

The audit trail stores its AuditEvents in batches (one round trip on PostgreSQL); these
tests compare what the batch leaves in the store with what single saves leave: the
resources, their history, their index rows and their outbox messages, on both backends,
and that a batch with a clash writes nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from shared.fhir.service import FhirService
from shared.store.database import Database, SqliteDatabase
from shared.store.schema import create_schema
from tests.support import BACKENDS, store_database
from tests.test_engine import BasicDefinition, basic, request


@pytest.fixture(params=BACKENDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with store_database(request.param, tmp_path, "savenew") as db:
        yield db


def resources() -> list[dict[str, Any]]:
    """New Basics with ids, notes and dates (index rows of each kind); one with a unique
    key, which goes the single way."""
    made = [
        basic(f"c{n}", created=f"2026-01-{n + 10}", note=f"note {n}", id=f"b{n}") for n in range(5)
    ]
    made[2]["code"]["coding"].append({"system": "urn:unique", "code": "only-one"})
    return made


async def snapshot(db: Database) -> dict[str, Any]:
    async with db.reader() as conn:
        rows = await conn.fetch(
            "SELECT res_type, res_id, version, deleted, patient, category, author, parties"
            " FROM resources ORDER BY res_id"
        )
        history = await conn.fetch(
            "SELECT res_id, version FROM resource_history ORDER BY res_id, version"
        )
        index = await conn.fetch(
            "SELECT res_id, param, system, value, lo, hi FROM search_index"
            " ORDER BY res_id, param, value"
        )
        keys = await conn.fetch("SELECT key_name, key_value, res_id FROM unique_keys")
        outbox = await conn.fetch("SELECT subject FROM outbox ORDER BY subject")
    return {
        "resources": [tuple(r) for r in rows],
        "history": [tuple(r) for r in history],
        "index": [tuple(r) for r in index],
        "keys": [tuple(r) for r in keys],
        "outbox": [tuple(r) for r in outbox],
    }


async def test_a_batch_leaves_what_single_saves_leave(database: Database, tmp_path: Path) -> None:
    batch = FhirService("unit", [BasicDefinition()], database, prefix="unit")
    async with batch.unit_of_work(request("create")) as uow:
        saved = await uow.save_new(resources())
    assert [s.res_id for s in saved] == [f"b{n}" for n in range(5)]

    single_db: Database = await SqliteDatabase.connect(tmp_path / "single.sqlite")
    await create_schema(single_db)
    try:
        single = FhirService("unit", [BasicDefinition()], single_db, prefix="unit")
        async with single.unit_of_work(request("create")) as uow:
            for resource in resources():
                await uow.save(resource)
        expected = await snapshot(single_db)
    finally:
        await single_db.close()

    stored = await snapshot(database)
    assert stored == expected
    assert len(stored["index"]) >= 15 and stored["keys"] == [("basic-code", "only-one", "b2")]
    assert len(stored["outbox"]) == 5


async def test_a_batch_with_a_clash_writes_nothing(database: Database) -> None:
    service = FhirService("unit", [BasicDefinition()], database, prefix="unit")
    async with service.unit_of_work(request("create")) as uow:
        await uow.save_new([basic("first", id="taken")])
    before = await snapshot(database)
    clashing = [basic("new", id="fresh"), basic("again", id="taken")]
    # The backend's own unique-violation error: which class depends on the driver.
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        async with service.unit_of_work(request("create")) as uow:
            await uow.save_new(clashing)
    assert await snapshot(database) == before


async def test_an_empty_batch_writes_nothing(database: Database) -> None:
    service = FhirService("unit", [BasicDefinition()], database, prefix="unit")
    before = await snapshot(database)
    async with service.unit_of_work(request("create")) as uow:
        assert await uow.save_new([]) == []
    assert await snapshot(database) == before
