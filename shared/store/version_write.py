"""Storing one version of a resource with everything that commits with it, in one round trip.

A version is its row in `resources` (the trigger in `shared.store.schema` keeps the
history and clears the old index rows), its search index rows, its unique keys and the
outbox messages that announce it. On PostgreSQL all of that is one call of the function
`store_version_raising`, one round trip instead of four to seven. Its statements run one
after another inside the caller's transaction, in the order the separate statements ran
before: the row, the keys released, the index, the keys claimed, the patient's lock, the
messages. So the outcome is the same: the version and everything with it, or a conflict
(an `If-Match` race, a key another resource holds), which the function raises
(`shared.store.failures.VersionConflict`), so the whole transaction rolls back. SQLite
runs in the process, with no round trips to save, and takes the same steps as separate
statements, returning the conflict.

Since a conflict raises, nothing is lost by not reading the call's result: the statement
that carries it, or the commit, fails. A first version that claims no unique key can
conflict with nothing but a resource of the same id (the primary key's violation), so
its call goes with the transaction's next statement or its commit
(`Connection.execute_later`): the resources a transaction bundle creates (a referral's
ServiceRequest, attachments and Task) are one round trip, not one each; so are the many
versions the audit trail stores at once (`store_new_versions`). A caller that answers
nothing before the commit (a client's create, `StoreUnitOfWork.checks_at_commit`) lets any
call wait so (`at_commit`): a create whose transaction reads nothing is then that call
alone, one implicit transaction, instead of BEGIN, the call and COMMIT. Elsewhere a call
that could conflict is sent at once and its conflict returned, so that it is answered
where it arose (a transaction bundle names the entry that failed).

Unique keys are released and claimed again only when they change: a version with the
keys of the one before holds them already.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.clock import now_instant
from shared.fhir.search_params import IndexValue
from shared.store.database import Connection
from shared.store.failures import VERSION_CONFLICT, VersionConflict
from shared.store.outbox import PATIENT_LOCK, Message
from shared.store.stored import StoredResource

UniqueKey = tuple[str, str]

_STORE_VERSION_TEMPLATE = """CREATE OR REPLACE FUNCTION {name}(
    p_type TEXT, p_id TEXT, p_version INTEGER, p_previous INTEGER, p_last_updated TEXT,
    p_deleted INTEGER, p_body BYTEA, p_patient TEXT, p_category TEXT, p_author TEXT,
    p_parties TEXT, p_release_keys BOOLEAN,
    p_params TEXT[], p_systems TEXT[], p_values TEXT[], p_los TEXT[], p_his TEXT[],
    p_key_names TEXT[], p_key_values TEXT[], p_lock_patient TEXT,
    p_message_ids TEXT[], p_subjects TEXT[], p_payloads BYTEA[], p_created TEXT
) RETURNS TEXT[] AS $$
DECLARE
    holder RECORD;
BEGIN
    IF p_previous = 0 THEN
        INSERT INTO resources (res_type, res_id, version, last_updated, deleted, body,
                               patient, category, author, parties)
        VALUES (p_type, p_id, p_version, p_last_updated, p_deleted, p_body,
                p_patient, p_category, p_author, p_parties);
    ELSE
        UPDATE resources SET version = p_version, last_updated = p_last_updated,
            deleted = p_deleted, body = p_body, patient = p_patient, category = p_category,
            author = p_author, parties = p_parties
        WHERE res_type = p_type AND res_id = p_id AND version = p_previous;
        IF NOT FOUND THEN
            {changed};
        END IF;
    END IF;
    IF p_release_keys THEN
        DELETE FROM unique_keys WHERE res_type = p_type AND res_id = p_id;
    END IF;
    INSERT INTO search_index (res_type, res_id, param, system, value, lo, hi)
    SELECT p_type, p_id, i.param, i.system, i.value, i.lo, i.hi
    FROM unnest(p_params, p_systems, p_values, p_los, p_his) AS i(param, system, value, lo, hi);
    FOR k IN 1 .. coalesce(array_length(p_key_names, 1), 0) LOOP
        -- A concurrent claim of the same key waits here until the other transaction ends.
        INSERT INTO unique_keys (key_name, key_value, res_type, res_id)
        VALUES (p_key_names[k], p_key_values[k], p_type, p_id)
        ON CONFLICT (key_name, key_value) DO NOTHING;
        IF NOT FOUND THEN
            SELECT u.res_type, u.res_id INTO holder FROM unique_keys u
            WHERE u.key_name = p_key_names[k] AND u.key_value = p_key_values[k];
            IF NOT FOUND THEN
                {unknown_holder};
            END IF;
            IF holder.res_type <> p_type OR holder.res_id <> p_id THEN
                {duplicate};
            END IF;
        END IF;
    END LOOP;
    IF p_lock_patient IS NOT NULL THEN
        PERFORM patient_lock;
    END IF;
    INSERT INTO outbox (event_id, subject, payload, created)
    SELECT m.id, m.subject, m.payload, p_created
    FROM unnest(p_message_ids, p_subjects, p_payloads) WITH ORDINALITY
        AS m(id, subject, payload, n)
    ORDER BY m.n;
    RETURN NULL;
END $$ LANGUAGE plpgsql""".replace("patient_lock", PATIENT_LOCK.replace("?", "p_lock_patient"))

STORE_VERSION_FUNCTION = _STORE_VERSION_TEMPLATE.format(
    name="store_version",
    changed="RETURN ARRAY['changed']",
    unknown_holder="RETURN ARRAY['duplicate', p_key_names[k], p_key_values[k], '', '']",
    duplicate="""RETURN ARRAY['duplicate', p_key_names[k], p_key_values[k],
                             holder.res_type, holder.res_id]""",
)
"""The function before `store_version_raising`, which returns its conflicts: instances of
that version call it still while a new one starts, so it is kept as it is."""


def _raise(reason: str, key: str = "NULL, NULL", holder: str = "NULL, NULL") -> str:
    return (
        f"RAISE EXCEPTION USING ERRCODE = '{VERSION_CONFLICT}', MESSAGE = '{reason}',"
        f" DETAIL = json_build_array(p_type, p_id, p_previous, {key}, {holder})::text"
    )


STORE_VERSION_RAISING_FUNCTION = _STORE_VERSION_TEMPLATE.format(
    name="store_version_raising",
    changed=_raise("changed"),
    unknown_holder=_raise("duplicate", "p_key_names[k], p_key_values[k]"),
    duplicate=_raise(
        "duplicate", "p_key_names[k], p_key_values[k]", "holder.res_type, holder.res_id"
    ),
)
"""`store_version` that raises its conflict (SQLSTATE `VERSION_CONFLICT`, the details in
JSON: `shared.store.failures.version_conflict`) instead of returning it, so that a call
whose outcome is read from whether it raised can wait for the commit."""


async def store_version(
    conn: Connection,
    row: StoredResource,
    *,
    previous_version: int,
    index: Sequence[tuple[str, IndexValue]],
    keys: Sequence[UniqueKey],
    previous_keys: Sequence[UniqueKey],
    messages: Sequence[Message],
    at_commit: bool = False,
) -> VersionConflict | None:
    """Store the version, its index rows (param, value), its unique keys (released and
    claimed again if they differ from `previous_keys`) and its messages; the conflict
    that kept it from being stored, if one did. With `at_commit` a PostgreSQL call waits
    for the transaction's next statement or its commit, and a conflict is raised there
    (`VersionConflict`): for a caller that answers nothing before the commit."""
    release = bool(previous_keys) and set(previous_keys) != set(keys)
    claim = keys if release or not previous_keys else ()
    write = _Write(row, previous_version, index, claim, release, messages)
    conn.outbox_written |= bool(messages)
    if conn.dialect != "postgresql":
        return await _in_statements(conn, write)
    call = f"SELECT {_STORE_VERSION_CALL}"
    if at_commit or (previous_version == 0 and not claim):
        # A first version without keys has nothing to conflict with but a resource of
        # the same id, which raises too (the primary key's violation).
        await conn.execute_later(call, *_call_arguments(write))
        return None
    try:
        await conn.execute(call, *_call_arguments(write))
    except VersionConflict as conflict:
        return conflict
    return None


@dataclass(frozen=True)
class _Write:
    """One call of `store_version`: the version, the one it follows (0: none), its index
    rows, the unique keys it claims, whether it releases the keys held before, and its
    messages."""

    row: StoredResource
    previous_version: int
    index: Sequence[tuple[str, IndexValue]]
    keys: Sequence[UniqueKey]
    release: bool
    messages: Sequence[Message]


@dataclass(frozen=True)
class NewVersion:
    """The first version of a resource without unique keys, with its index rows and
    messages: what `store_new_versions` stores in a batch."""

    row: StoredResource
    index: Sequence[tuple[str, IndexValue]]
    messages: Sequence[Message]


async def store_new_versions(conn: Connection, versions: Sequence[NewVersion]) -> None:
    """Store many first versions at once: on PostgreSQL their calls wait for the
    transaction's next statement or its commit (`Connection.execute_later`) and go as one
    pipelined batch, which is the whole transaction when nothing else is sent (the audit
    trail's batch). Such a version has nothing to conflict with but a resource of the same
    id, and that is the primary key's violation, raised; so no outcome is lost by not
    reading it."""
    writes = [_Write(v.row, 0, v.index, (), False, v.messages) for v in versions]
    if not writes:
        return
    conn.outbox_written |= any(write.messages for write in writes)
    if conn.dialect != "postgresql":
        for write in writes:
            conflict = await _in_statements(conn, write)
            assert conflict is None, "a first version without keys has nothing to conflict with"
        return
    for write in writes:
        await conn.execute_later(f"SELECT {_STORE_VERSION_CALL}", *_call_arguments(write))


def _columns(row: StoredResource) -> tuple[str | None, ...]:
    """The access columns: patient, category, author, parties."""
    access = row.access
    return access.patient, access.category, access.author, access.parties_text


_STORE_VERSION_CALL = (
    "store_version_raising(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _call_arguments(write: _Write) -> tuple[object, ...]:
    row, index, keys, messages = write.row, write.index, write.keys, write.messages
    patients = {m.patient for m in messages if m.patient is not None}
    return (
        row.res_type, row.res_id, row.version, write.previous_version, row.last_updated,
        int(row.deleted), row.body, *_columns(row), write.release,
        [name + value.qualifier for name, value in index],
        [value.system for _, value in index], [value.value for _, value in index],
        [value.lo for _, value in index], [value.hi for _, value in index],
        [name for name, _ in keys], [value for _, value in keys],
        min(patients) if patients else None,
        [m.message_id for m in messages], [m.subject for m in messages],
        [m.payload for m in messages], now_instant(),
    )  # fmt: skip


async def _in_statements(conn: Connection, write: _Write) -> VersionConflict | None:
    row, previous_version, index = write.row, write.previous_version, write.index
    keys, release, messages = write.keys, write.release, write.messages
    values = (row.version, row.last_updated, int(row.deleted), row.body, *_columns(row))
    if previous_version == 0:
        await conn.execute(
            "INSERT INTO resources (res_type, res_id, version, last_updated, deleted, body,"
            " patient, category, author, parties) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            row.res_type, row.res_id, *values,
        )  # fmt: skip
    else:
        changed = await conn.execute(
            "UPDATE resources SET version = ?, last_updated = ?, deleted = ?, body = ?,"
            " patient = ?, category = ?, author = ?, parties = ?"
            " WHERE res_type = ? AND res_id = ? AND version = ?",
            *values, row.res_type, row.res_id, previous_version,
        )  # fmt: skip
        if changed != 1:
            return VersionConflict("changed", row.res_type, row.res_id, created=False)
    if release:
        await conn.execute(
            "DELETE FROM unique_keys WHERE res_type = ? AND res_id = ?", row.res_type, row.res_id
        )
    await conn.executemany(
        "INSERT INTO search_index (res_type, res_id, param, system, value, lo, hi)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (row.res_type, row.res_id, name + v.qualifier, v.system, v.value, v.lo, v.hi)
            for name, v in index
        ],
    )
    for key_name, key_value in keys:
        claimed = await conn.execute(
            "INSERT INTO unique_keys (key_name, key_value, res_type, res_id)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (key_name, key_value) DO NOTHING",
            key_name, key_value, row.res_type, row.res_id,
        )  # fmt: skip
        if claimed == 1:
            continue
        holder = await conn.fetchrow(
            "SELECT res_type, res_id FROM unique_keys WHERE key_name = ? AND key_value = ?",
            key_name,
            key_value,
        )
        if holder is None:
            return _duplicate(write, (key_name, key_value), ("", ""))
        if (holder[0], holder[1]) != (row.res_type, row.res_id):
            return _duplicate(write, (key_name, key_value), (holder[0], holder[1]))
    created = now_instant()
    await conn.executemany(
        "INSERT INTO outbox (event_id, subject, payload, created) VALUES (?, ?, ?, ?)",
        [(m.message_id, m.subject, m.payload, created) for m in messages],
    )
    return None


def _duplicate(write: _Write, key: UniqueKey, holder: tuple[str, str]) -> VersionConflict:
    row = write.row
    return VersionConflict(
        "duplicate", row.res_type, row.res_id, write.previous_version == 0, key, holder
    )
