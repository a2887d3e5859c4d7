"""Keeping a service's tables planned well when PostgreSQL's autovacuum is off.

PostgreSQL chooses a query plan from each table's statistics, which ANALYZE gathers and
autovacuum normally keeps fresh. Without them a table that grew from empty is planned as if
it were still empty: a search by patient then walks every row of the type in id order
instead of looking the value up in the index, and each search costs more the larger the
table (seen during a bulk import: the directory's RelatedPerson search went from 0.1 ms to
200 ms at 1,500 rows, and the import slowed with every child). Dead rows (an update's old
index rows, published outbox rows) are only reclaimed by VACUUM.

So each service checks its own schema's tables every `BARNEBRO_TABLE_UPKEEP_SECONDS` and,
only while the server's `autovacuum` setting is off, does what autovacuum would do with its
default thresholds: ANALYZE a table once more than 50 + 10 % of its rows changed since the
last ANALYZE, VACUUM (ANALYZE) it once more than 50 + 20 % of its rows are dead. Both skip a
table another session holds (`SKIP_LOCKED`) and take no lock that blocks reads or writes, so
instances of a service sharing a schema never wait on each other. With autovacuum on (the
PostgreSQL default, and what the deploy guide asks for) this does nothing. SQLite plans
without statistics of this kind: nothing to do.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.store.database import Connection, Database

ANALYZE_BASE, ANALYZE_SCALE = 50, 0.1
VACUUM_BASE, VACUUM_SCALE = 50, 0.2
"""PostgreSQL's defaults for `autovacuum_analyze_threshold`/`_scale_factor` and
`autovacuum_vacuum_threshold`/`_scale_factor`."""
UPKEEP_DONE = "autovacuum is off: analyzed or vacuumed %d tables"

_TABLES = """SELECT s.relname, s.n_mod_since_analyze, s.n_dead_tup, c.reltuples
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
WHERE s.schemaname = current_schema()
ORDER BY s.relname"""


@dataclass(frozen=True)
class TableCounts:
    """What the statistics collector knows of one table."""

    name: str
    changed_since_analyze: int
    dead_rows: int
    rows: float
    """The planner's estimate; -1 (PostgreSQL 14+) or 0 before the first ANALYZE."""


def upkeep_due(table: TableCounts) -> str | None:
    """What autovacuum would do to the table now: `vacuum` (which analyzes too), `analyze`,
    or None."""
    rows = max(table.rows, 0.0)
    if table.dead_rows > VACUUM_BASE + VACUUM_SCALE * rows:
        return "vacuum"
    if table.changed_since_analyze > ANALYZE_BASE + ANALYZE_SCALE * rows:
        return "analyze"
    return None


def upkeep_statement(table: str, due: str) -> str:
    quoted = '"' + table.replace('"', '""') + '"'
    if due == "vacuum":
        return f"VACUUM (ANALYZE, SKIP_LOCKED) {quoted}"
    return f"ANALYZE (SKIP_LOCKED) {quoted}"


async def autovacuum_on(conn: Connection) -> bool:
    row = await conn.fetchrow("SELECT current_setting('autovacuum')")
    return row is None or str(row[0]) == "on"


async def table_counts(conn: Connection) -> list[TableCounts]:
    return [
        TableCounts(str(row[0]), int(row[1] or 0), int(row[2] or 0), float(row[3] or 0))
        for row in await conn.fetch(_TABLES)
    ]


async def keep_tables(db: Database) -> int:
    """One round of upkeep of the service's schema; the tables it analyzed or vacuumed."""
    if db.dialect != "postgresql":
        return 0
    # Outside a transaction: VACUUM cannot run inside one.
    async with db.reader() as conn:
        if await autovacuum_on(conn):
            return 0
        done = 0
        for table in await table_counts(conn):
            due = upkeep_due(table)
            if due is None:
                continue
            await conn.execute(upkeep_statement(table.name, due))
            done += 1
        return done
