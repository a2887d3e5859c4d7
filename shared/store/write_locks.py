"""The locks a write takes on what it replaces: the patient's first, then the row's.

Every transaction that changes a patient's records takes the patient's lock
(`shared.store.outbox.PATIENT_LOCK`) before it locks any of the patient's rows, so two
writers of one patient never wait for each other crosswise. A write that replaces a
version therefore learns the patient from the stored row, takes that patient's lock (or
the one it names), and only then locks the row (`FOR UPDATE`) and reads it. On
PostgreSQL that is one call of the function `locked_version`, one round trip instead of
three (read, patient lock, locked read). SQLite has a single writer and no row locks:
there it is a plain read.

A transaction that writes the records of several patients (a Bundle) takes their locks
up front, in one order (`lock_patients`: the patients of the rows it replaces and those
its new records name, sorted), so two Bundles naming the same two children in opposite
orders do not each hold one and wait for the other.

The patient is read before its lock is held: a concurrent write that moved the row to
another patient commits before the row lock is granted, and the version returned is
then that write's. The write that follows takes the new patient's lock too, when it
stores its version (`shared.store.version_write`).
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.store.database import Connection, Row
from shared.store.outbox import PATIENT_LOCK
from shared.store.search_sql import COLUMNS

LOCKED_VERSION_FUNCTION = """CREATE OR REPLACE FUNCTION locked_version(
    p_type TEXT, p_id TEXT, p_patient TEXT, p_stored_patient BOOLEAN, p_also TEXT
) RETURNS SETOF resources AS $$
DECLARE
    holder TEXT := p_patient;
BEGIN
    IF holder IS NULL AND p_stored_patient THEN
        SELECT r.patient INTO holder FROM resources r
        WHERE r.res_type = p_type AND r.res_id = p_id;
    END IF;
    FOR holder IN
        SELECT DISTINCT p FROM (VALUES (holder), (p_also)) AS named(p)
        WHERE p IS NOT NULL ORDER BY p
    LOOP
        PERFORM patient_lock;
    END LOOP;
    RETURN QUERY SELECT * FROM resources r
        WHERE r.res_type = p_type AND r.res_id = p_id FOR UPDATE;
END $$ LANGUAGE plpgsql""".replace("patient_lock", PATIENT_LOCK.replace("?", "holder"))
"""Before this took `p_also`, a schema had `locked_version` of four arguments; instances of
that version call it still while a new one starts, so it is left as it is."""


LOCK_PATIENTS_FUNCTION = """CREATE OR REPLACE FUNCTION lock_patients(
    p_types TEXT[], p_ids TEXT[], p_patients TEXT[]
) RETURNS INTEGER AS $$
DECLARE
    holder TEXT;
    taken INTEGER := 0;
BEGIN
    FOR holder IN
        SELECT DISTINCT p FROM (
            SELECT r.patient AS p
            FROM unnest(p_types, p_ids) AS t(res_type, res_id)
            JOIN resources r ON r.res_type = t.res_type AND r.res_id = t.res_id
            UNION SELECT unnest(p_patients)
        ) named
        WHERE p IS NOT NULL
        ORDER BY p
    LOOP
        PERFORM patient_lock;
        taken := taken + 1;
    END LOOP;
    RETURN taken;
END $$ LANGUAGE plpgsql""".replace("patient_lock", PATIENT_LOCK.replace("?", "holder"))


async def lock_patients(
    conn: Connection, replaced: Sequence[tuple[str, str]], patients: Sequence[str]
) -> None:
    """Take, in one order, the locks of the patients the stored `replaced` resources
    (type, id) name and of `patients` (SQLite: one writer, nothing to take)."""
    if conn.dialect != "postgresql" or not (replaced or patients):
        return
    await conn.fetchrow(
        "SELECT lock_patients(?, ?, ?)",
        [res_type for res_type, _ in replaced],
        [res_id for _, res_id in replaced],
        list(patients),
    )


async def locked_row(
    conn: Connection,
    res_type: str,
    res_id: str,
    *,
    patient: str | None = None,
    stored_patient: bool = False,
    also: str | None = None,
) -> Row | None:
    """The current row of a resource, locked until the transaction ends, after the lock
    of `patient` (or, with `stored_patient`, of the patient the stored row names) and of
    `also`, the two in one order: a write that moves a record from one patient to another
    holds both before it goes on, so two moves across the same two patients in opposite
    directions never wait for each other crosswise."""
    if conn.dialect != "postgresql":
        return await conn.fetchrow(
            f"SELECT {COLUMNS} FROM resources r WHERE r.res_type = ? AND r.res_id = ?",
            res_type,
            res_id,
        )
    if patient is None and not stored_patient and also is None:
        return await conn.fetchrow(
            f"SELECT {COLUMNS} FROM resources r WHERE r.res_type = ? AND r.res_id = ? FOR UPDATE",
            res_type,
            res_id,
        )
    return await conn.fetchrow(
        f"SELECT {COLUMNS} FROM locked_version(?, ?, ?, ?, ?) r",
        res_type,
        res_id,
        patient,
        stored_patient,
        also,
    )


async def held(conn: Connection, res_type: str, res_id: str) -> bool:
    """Whether a resource is current (stored, not deleted); if it is, it stays so until the
    transaction ends. A write that rests on another record (a care order on its holder)
    takes the row's share lock: a deletion, which locks the row for update, waits for the
    write's commit, or the write waits for the deletion's and finds the record gone.
    Writes resting on the same record share the lock and do not wait for each other.
    SQLite has a single writer: a plain read."""
    lock = " FOR SHARE" if conn.dialect == "postgresql" else ""
    row = await conn.fetchrow(
        "SELECT 1 FROM resources WHERE res_type = ? AND res_id = ? AND deleted = 0" + lock,
        res_type,
        res_id,
    )
    return row is not None
