"""Data migrations: each runs once per database, recorded, outside the request path.

A schema change is idempotent DDL (`shared.store.schema`); a change to stored data is a
named migration. `apply_once` runs it in one transaction with its record, so a migration
is either applied and recorded or neither; instances that start together both may run
it, and the record is written once (migrations must therefore be idempotent, and are).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from shared.clock import now_instant
from shared.store.database import Connection, Database

log = logging.getLogger(__name__)

Migration = Callable[[Connection], Awaitable[int]]
"""Changes stored data in the given transaction; returns how many rows it changed."""


async def applied(db: Database) -> dict[str, int]:
    """The migrations recorded in this database, with the rows each changed."""
    async with db.reader() as conn:
        rows = await conn.fetch("SELECT name, changed FROM applied_migrations")
    return {str(name): int(changed) for name, changed in rows}


async def apply_once(db: Database, migrations: dict[str, Migration]) -> dict[str, int]:
    """Run each of `migrations` whose name is not recorded, all in one transaction with
    their records; returns the rows each one run changed (those applied before are not
    in it). One transaction, so that a start with nothing to migrate costs one round trip
    whatever the number of migrations."""
    ran: dict[str, int] = {}
    async with db.transaction() as conn:
        rows = await conn.fetch("SELECT name FROM applied_migrations")
        recorded = {str(row[0]) for row in rows}
        for name, migration in migrations.items():
            if name in recorded:
                continue
            ran[name] = await migration(conn)
            await conn.execute(
                "INSERT INTO applied_migrations (name, applied, changed) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO NOTHING",
                name,
                now_instant(),
                ran[name],
            )
    for name, changed in ran.items():
        if changed:
            log.info("applied migration %s (%d rows)", name, changed)
    return ran
