"""The table of relations the consent service has learnt: (child, organisasjonsnummer).

Written by the relation watch (`services.consent.relations`) and read when a child's
access state is computed (`services.consent.handlers`); a relation is never taken back.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.store.database import Connection, Database

SCHEMA = """CREATE TABLE IF NOT EXISTS consent_relations (
    patient TEXT NOT NULL, orgnr TEXT NOT NULL, PRIMARY KEY (patient, orgnr))"""


async def create_table(db: Database) -> None:
    async with db.transaction() as conn:
        await conn.execute(SCHEMA)


async def related(conn: Connection, patient: str) -> list[str]:
    """The organisations related to a child, in order."""
    rows = await conn.fetch(
        "SELECT orgnr FROM consent_relations WHERE patient = ? ORDER BY orgnr", patient
    )
    return [str(row[0]) for row in rows]


async def add_relations(conn: Connection, pairs: Iterable[tuple[str, str]]) -> list[str]:
    """Record (child, orgnr) pairs; the children that gained a relation, in order."""
    gained: dict[str, None] = {}
    for patient, orgnr in pairs:
        added = await conn.execute(
            "INSERT INTO consent_relations (patient, orgnr) VALUES (?, ?) ON CONFLICT DO NOTHING",
            patient,
            orgnr,
        )
        if added:
            gained[patient] = None
    return list(gained)
