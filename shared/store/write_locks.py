"""The locks a write takes on what it replaces: the patient's first, then the row's.

Every transaction that changes a patient's records takes the patient's lock
(`shared.store.outbox.PATIENT_LOCK`) before it locks any of the patient's rows, so two
writers of one patient never wait for each other crosswise. A write that replaces a
version therefore learns the patient from the stored row, takes that patient's lock (or
the one it names), and only then locks the row (`FOR UPDATE`) and reads it. On
PostgreSQL that is one call of the function `locked_version`, one round trip instead of
three (read, patient lock, locked read). SQLite has a single writer and no row locks:
there it is a plain read.

The patient is read before its lock is held: a concurrent write that moved the row to
another patient commits before the row lock is granted, and the version returned is
then that write's. The write that follows takes the new patient's lock too, when it
stores its version (`shared.store.version_write`).
"""

from __future__ import annotations

from shared.store.database import Connection, Row
from shared.store.outbox import PATIENT_LOCK
from shared.store.search_sql import COLUMNS

LOCKED_VERSION_FUNCTION = """CREATE OR REPLACE FUNCTION locked_version(
    p_type TEXT, p_id TEXT, p_patient TEXT, p_stored_patient BOOLEAN
) RETURNS SETOF resources AS $$
DECLARE
    holder TEXT := p_patient;
BEGIN
    IF holder IS NULL AND p_stored_patient THEN
        SELECT r.patient INTO holder FROM resources r
        WHERE r.res_type = p_type AND r.res_id = p_id;
    END IF;
    IF holder IS NOT NULL THEN
        PERFORM patient_lock;
    END IF;
    RETURN QUERY SELECT * FROM resources r
        WHERE r.res_type = p_type AND r.res_id = p_id FOR UPDATE;
END $$ LANGUAGE plpgsql""".replace("patient_lock", PATIENT_LOCK.replace("?", "holder"))


async def locked_row(
    conn: Connection,
    res_type: str,
    res_id: str,
    *,
    patient: str | None = None,
    stored_patient: bool = False,
) -> Row | None:
    """The current row of a resource, locked until the transaction ends, after the lock
    of `patient` (or, with `stored_patient`, of the patient the stored row names)."""
    if conn.dialect != "postgresql":
        return await conn.fetchrow(
            f"SELECT {COLUMNS} FROM resources r WHERE r.res_type = ? AND r.res_id = ?",
            res_type,
            res_id,
        )
    if patient is None and not stored_patient:
        return await conn.fetchrow(
            f"SELECT {COLUMNS} FROM resources r WHERE r.res_type = ? AND r.res_id = ? FOR UPDATE",
            res_type,
            res_id,
        )
    return await conn.fetchrow(
        f"SELECT {COLUMNS} FROM locked_version(?, ?, ?, ?) r",
        res_type,
        res_id,
        patient,
        stored_patient,
    )
