"""What a benchmark's tables hold once it has loaded them: vacuumed, analysed, counted.

A benchmark that fills a database and then measures reads would otherwise measure
whatever state the load left: statistics from when the tables were small (plans chosen
for them) and pages not yet marked all-visible. Autovacuum brings a grown table to this
state on its own, in time; the benchmarks do it at once, and report the rows and the size
on disk (indexes included) of each table, so that a result says what was measured against.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg


async def vacuum_and_count(url: str, schema: str, tables: Sequence[str] = ()) -> dict[str, Any]:
    """VACUUM ANALYZE `tables` of `schema` (every table in it when none are named); their
    rows and size on disk, indexes included."""
    conn = await asyncpg.connect(url)
    try:
        if not tables:
            rows = await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY tablename", schema
            )
            tables = [str(row["tablename"]) for row in rows]
        for table in tables:
            await conn.execute(f'VACUUM (ANALYZE) "{schema}"."{table}"')
        found: dict[str, Any] = {}
        for table in tables:
            count = await conn.fetchval(f'SELECT count(*) FROM "{schema}"."{table}"')
            size = await conn.fetchval("SELECT pg_total_relation_size($1::regclass)",
                                       f'"{schema}"."{table}"')  # fmt: skip
            found[table] = {"rows": int(count), "total_mb": round(int(size) / 2**20, 1)}
        return found
    finally:
        await conn.close()
