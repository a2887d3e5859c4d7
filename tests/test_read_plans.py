"""A read by id searches the primary key, however many rows its type has.

PostgreSQL plans a prepared statement once for any parameters (a generic plan) after a
few runs. A read by id names its ids as one JSON array (`IN_TEXT_LIST`); spelled as a
sub-select of the array's elements, the generic plan scanned every row of the type, and
the read's cost grew with the table. The plan is read here as the pool's statement cache
would use it (`plan_cache_mode = force_generic_plan`), on a table of a few thousand rows.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
import pytest

from shared.store.resource_store import ResourceStore
from shared.store.schema import create_schema
from tests.support import postgres_url, schema_database

pytestmark = pytest.mark.services

ROWS = 3_000


async def _sent_read(monkeypatch: pytest.MonkeyPatch, db: Any) -> tuple[str, tuple[Any, ...]]:
    """The statement (and its arguments) the store sends for a read by id."""
    sent: list[tuple[str, tuple[Any, ...]]] = []
    original = asyncpg.Connection.fetch

    async def fetch(self: Any, sql: str, *args: Any, **kwargs: Any) -> Any:
        sent.append((sql, args))
        return await original(self, sql, *args, **kwargs)

    monkeypatch.setattr(asyncpg.Connection, "fetch", fetch)
    async with db.reader() as conn:
        found = await ResourceStore({}).read_current(
            conn, [("Organization", "org-00007")], inline_bytes=16_384
        )
    monkeypatch.undo()
    assert found[0] is not None and found[0].res_id == "org-00007"
    (read,) = [s for s in sent if "FROM resources" in s[0]]
    return read


async def test_a_read_by_id_searches_the_primary_key(monkeypatch: pytest.MonkeyPatch) -> None:
    async with schema_database("t_read_plan") as db:
        await create_schema(db)
        async with db.transaction() as conn:
            await conn.executemany(
                "INSERT INTO resources (res_type, res_id, version, last_updated, deleted, body)"
                " VALUES (?, ?, 1, '2026-12-07T00:00:00.000000Z', 0, ?)",
                [
                    ("Organization", f"org-{n:05d}", orjson.dumps({"id": f"org-{n:05d}"}))
                    for n in range(ROWS)
                ],
            )
        sql, args = await _sent_read(monkeypatch, db)
        admin = await asyncpg.connect(postgres_url())
        try:
            await admin.execute(f"SET search_path TO {db.schema}")
            await admin.execute("ANALYZE resources")
            await admin.execute("SET plan_cache_mode = force_generic_plan")
            await admin.execute(f"PREPARE read_by_id AS {sql}")
            values = ", ".join(f"'{a}'" if isinstance(a, str) else str(a) for a in args)
            plan = "\n".join(
                row[0] for row in await admin.fetch(f"EXPLAIN EXECUTE read_by_id({values})")
            )
        finally:
            await admin.close()
    assert "resources_pkey" in plan, plan
    assert "Seq Scan on resources" not in plan, plan
