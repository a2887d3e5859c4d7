"""A service keeps its tables' statistics when the PostgreSQL server's autovacuum is off.

The machine's PostgreSQL runs with autovacuum off, which is the case the upkeep exists
for: these tests check against it that a table grown from empty is analyzed (so the
planner knows its size rather than planning it as empty), that a table
with many dead rows is vacuumed, and that nothing is done below autovacuum's thresholds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest

from shared.store.database import PostgresDatabase
from shared.store.upkeep import TableCounts, keep_tables, upkeep_due, upkeep_statement
from tests.support import postgres_url, schema_database


@pytest.fixture
async def database() -> AsyncIterator[PostgresDatabase]:
    async with schema_database("upkeep") as db:
        async with db.transaction() as conn:
            await conn.execute("CREATE TABLE items (id TEXT PRIMARY KEY, kind TEXT)")
            await conn.execute("CREATE INDEX items_by_kind ON items (kind)")
        yield db


async def server_autovacuum() -> str:
    conn = await asyncpg.connect(postgres_url())
    try:
        return str(await conn.fetchval("SHOW autovacuum"))
    finally:
        await conn.close()


async def counts(db: PostgresDatabase) -> dict[str, Any]:
    async with db.reader() as conn:
        row = await conn.fetchrow(
            "SELECT n_mod_since_analyze, n_dead_tup, last_analyze, last_vacuum"
            " FROM pg_stat_user_tables WHERE schemaname = current_schema()"
            " AND relname = 'items'"
        )
    assert row is not None
    return {"changed": row[0], "dead": row[1], "analyzed": row[2], "vacuumed": row[3]}


async def shown(db: PostgresDatabase, condition: Callable[[dict[str, Any]], bool]) -> None:
    """Wait until the statistics collector's counts meet `condition` (a backend reports
    them shortly after its transaction or its VACUUM ends)."""
    for _ in range(100):
        if condition(await counts(db)):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the collector never showed it: {await counts(db)}")


async def flushed(db: PostgresDatabase, **expected: int) -> None:
    """Wait until the collector shows at least the expected counts."""
    await shown(db, lambda now: all(now[name] >= value for name, value in expected.items()))


async def planner_rows(db: PostgresDatabase) -> float:
    """The planner's idea of the table's size (-1: it has never been analyzed)."""
    async with db.reader() as conn:
        row = await conn.fetchrow("SELECT reltuples FROM pg_class WHERE oid = to_regclass('items')")
    assert row is not None
    return float(row[0])


async def fill(db: PostgresDatabase, rows: int) -> None:
    async with db.transaction() as conn:
        await conn.executemany(
            "INSERT INTO items (id, kind) VALUES (?, ?)",
            [(f"i{n}", "rare" if n == 0 else f"k{n % 500}") for n in range(rows)],
        )
        await conn.execute("SELECT pg_stat_force_next_flush()")


@pytest.mark.services
async def test_a_grown_table_is_analyzed_and_then_planned_by_its_index(
    database: PostgresDatabase,
) -> None:
    assert await server_autovacuum() == "off", "these tests need the autovacuum-off case"
    await fill(database, 20_000)
    await flushed(database, changed=20_000)
    assert (await counts(database))["analyzed"] is None
    assert await planner_rows(database) == -1
    assert await keep_tables(database) == 1
    await shown(database, lambda now: now["analyzed"] is not None and now["changed"] == 0)
    assert await planner_rows(database) == 20_000
    # Nothing changed since: the next round does nothing.
    assert await keep_tables(database) == 0


@pytest.mark.services
async def test_a_table_with_many_dead_rows_is_vacuumed(database: PostgresDatabase) -> None:
    await fill(database, 1_000)
    await flushed(database, changed=1_000)
    await keep_tables(database)
    async with database.transaction() as conn:
        await conn.execute("DELETE FROM items WHERE id <> 'i0'")
        await conn.execute("SELECT pg_stat_force_next_flush()")
    await flushed(database, dead=999)
    assert await keep_tables(database) == 1
    # Whether VACUUM can remove the rows depends on the oldest transaction of the whole
    # server (other sessions on this machine), so what is checked is that it ran.
    await shown(database, lambda now: now["vacuumed"] is not None)


@pytest.mark.services
async def test_a_few_changes_leave_the_table_alone(database: PostgresDatabase) -> None:
    await fill(database, 40)
    await flushed(database, changed=40)
    assert await keep_tables(database) == 0
    assert (await counts(database))["analyzed"] is None


def test_the_thresholds_are_autovacuums_defaults() -> None:
    never_analyzed = TableCounts("t", changed_since_analyze=51, dead_rows=0, rows=-1)
    assert upkeep_due(never_analyzed) == "analyze"
    assert upkeep_due(TableCounts("t", 50, 0, -1)) is None
    assert upkeep_due(TableCounts("t", 1_050, 0, 10_000)) is None
    assert upkeep_due(TableCounts("t", 1_051, 0, 10_000)) == "analyze"
    assert upkeep_due(TableCounts("t", 0, 2_050, 10_000)) is None
    assert upkeep_due(TableCounts("t", 0, 2_051, 10_000)) == "vacuum"
    assert upkeep_due(TableCounts("t", 5_000, 5_000, 10_000)) == "vacuum"


def test_a_table_name_is_quoted() -> None:
    assert upkeep_statement('we"ird', "analyze") == 'ANALYZE (SKIP_LOCKED) "we""ird"'
    assert upkeep_statement("items", "vacuum") == 'VACUUM (ANALYZE, SKIP_LOCKED) "items"'
