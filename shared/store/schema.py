"""The tables every service keeps in its own database or schema.

Current versions, full history, the search index derived from declared search parameters,
business keys that must stay unique, claims that serialise conditional creates, the
outbox of domain events and the data migrations applied (`shared.store.migrations`).
Created idempotently at service start-up.

Every version also carries the access columns (`shared.store.access_sql`): the patient,
the data category, the author organisation and the organisations named on the resource,
so searches and history are filtered by consent in SQL, each version by its own columns
(a version about another patient stays that patient's). Tables made before these columns
existed get them added at start-up.

A trigger on `resources` copies every new version into `resource_history` and, when a
resource changes (its `version`), drops its old search-index rows: each write is then one
statement fewer on the hot path, and no code path can store a version without its history.
"""

from __future__ import annotations

from shared.store.database import Connection, Database
from shared.store.outbox import UNSENT_FUNCTION
from shared.store.version_write import STORE_VERSION_FUNCTION, STORE_VERSION_RAISING_FUNCTION
from shared.store.write_locks import LOCK_PATIENTS_FUNCTION, LOCKED_VERSION_FUNCTION

_COMMON = [
    """CREATE TABLE IF NOT EXISTS resources (
        res_type TEXT NOT NULL, res_id TEXT NOT NULL, version INTEGER NOT NULL,
        last_updated TEXT NOT NULL, deleted INTEGER NOT NULL, body {blob},
        patient TEXT, category TEXT, author TEXT, parties TEXT,
        PRIMARY KEY (res_type, res_id))""",
    "CREATE INDEX IF NOT EXISTS resources_by_time ON resources (res_type, last_updated, res_id)",
    """CREATE TABLE IF NOT EXISTS resource_history (
        seq {serial}, res_type TEXT NOT NULL, res_id TEXT NOT NULL, version INTEGER NOT NULL,
        last_updated TEXT NOT NULL, deleted INTEGER NOT NULL, body {blob},
        patient TEXT, category TEXT, author TEXT, parties TEXT,
        UNIQUE (res_type, res_id, version))""",
    """CREATE INDEX IF NOT EXISTS history_by_time
        ON resource_history (res_type, last_updated, res_id, version)""",
    """CREATE TABLE IF NOT EXISTS search_index (
        res_type TEXT NOT NULL, res_id TEXT NOT NULL, param TEXT NOT NULL,
        system TEXT, value TEXT, lo TEXT, hi TEXT)""",
    "CREATE INDEX IF NOT EXISTS search_by_value ON search_index (res_type, param, value)",
    "CREATE INDEX IF NOT EXISTS search_by_date ON search_index (res_type, param, lo, hi)",
    "CREATE INDEX IF NOT EXISTS search_by_resource ON search_index (res_type, res_id)",
    """CREATE TABLE IF NOT EXISTS unique_keys (
        key_name TEXT NOT NULL, key_value TEXT NOT NULL,
        res_type TEXT NOT NULL, res_id TEXT NOT NULL,
        PRIMARY KEY (key_name, key_value))""",
    "CREATE INDEX IF NOT EXISTS unique_keys_by_resource ON unique_keys (res_type, res_id)",
    """CREATE TABLE IF NOT EXISTS conditional_claims (
        res_type TEXT NOT NULL, criteria TEXT NOT NULL, PRIMARY KEY (res_type, criteria))""",
    """CREATE TABLE IF NOT EXISTS outbox (
        seq {serial}, event_id TEXT NOT NULL UNIQUE, subject TEXT NOT NULL,
        payload {blob} NOT NULL, created TEXT NOT NULL, sent_at TEXT)""",
    "CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (seq) WHERE sent_at IS NULL",
    """CREATE TABLE IF NOT EXISTS applied_migrations (
        name TEXT PRIMARY KEY, applied TEXT NOT NULL, changed INTEGER NOT NULL)""",
]

_DIALECT_STATEMENTS = {
    "postgresql": [
        # Prefix search (LIKE 'abc%') can use an index only with pattern operators when the
        # database collation is not C.
        """CREATE INDEX IF NOT EXISTS search_by_prefix
        ON search_index (res_type, param, value text_pattern_ops)""",
        """CREATE OR REPLACE FUNCTION keep_resource_history() RETURNS trigger AS $$
        BEGIN
            INSERT INTO resource_history (res_type, res_id, version, last_updated, deleted, body,
                                          patient, category, author, parties)
            VALUES (NEW.res_type, NEW.res_id, NEW.version, NEW.last_updated, NEW.deleted,
                    NEW.body, NEW.patient, NEW.category, NEW.author, NEW.parties);
            IF TG_OP = 'UPDATE' THEN
                DELETE FROM search_index WHERE res_type = NEW.res_type AND res_id = NEW.res_id;
            END IF;
            RETURN NULL;
        END $$ LANGUAGE plpgsql""",
        STORE_VERSION_FUNCTION,
        STORE_VERSION_RAISING_FUNCTION,
        LOCKED_VERSION_FUNCTION,
        LOCK_PATIENTS_FUNCTION,
        UNSENT_FUNCTION,
        "DROP TRIGGER IF EXISTS resources_keep_history ON resources",
        """CREATE TRIGGER resources_keep_history AFTER INSERT OR UPDATE OF version ON resources
        FOR EACH ROW EXECUTE FUNCTION keep_resource_history()""",
    ],
    "sqlite": [
        "DROP TRIGGER IF EXISTS resources_history_on_insert",
        "DROP TRIGGER IF EXISTS resources_history_on_update",
        """CREATE TRIGGER resources_history_on_insert AFTER INSERT ON resources
        BEGIN
            INSERT INTO resource_history (res_type, res_id, version, last_updated, deleted, body,
                                          patient, category, author, parties)
            VALUES (NEW.res_type, NEW.res_id, NEW.version, NEW.last_updated, NEW.deleted,
                    NEW.body, NEW.patient, NEW.category, NEW.author, NEW.parties);
        END""",
        """CREATE TRIGGER resources_history_on_update AFTER UPDATE OF version ON resources
        BEGIN
            INSERT INTO resource_history (res_type, res_id, version, last_updated, deleted, body,
                                          patient, category, author, parties)
            VALUES (NEW.res_type, NEW.res_id, NEW.version, NEW.last_updated, NEW.deleted,
                    NEW.body, NEW.patient, NEW.category, NEW.author, NEW.parties);
            DELETE FROM search_index WHERE res_type = NEW.res_type AND res_id = NEW.res_id;
        END""",
    ],
}

_TYPES = {
    "postgresql": {"serial": "BIGSERIAL PRIMARY KEY", "blob": "BYTEA"},
    "sqlite": {"serial": "INTEGER PRIMARY KEY AUTOINCREMENT", "blob": "BLOB"},
}


ACCESS_COLUMNS = ("patient", "category", "author", "parties")


async def _add_access_columns(conn: Connection, table: str) -> None:
    if conn.dialect == "postgresql":
        rows = await conn.fetch(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = ?",
            table,
        )
        present = {str(row[0]) for row in rows}
    else:
        present = {str(row[1]) for row in await conn.fetch(f"PRAGMA table_info({table})")}
    for column in ACCESS_COLUMNS:
        if column not in present:
            await conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")


async def create_schema(db: Database) -> None:
    """Create the tables if they do not exist yet (safe to run on every start)."""
    types = _TYPES[db.dialect]
    async with db.transaction() as conn:
        if db.dialect == "postgresql":
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema()))")
        for statement in _COMMON:
            await conn.execute(statement.format(**types))
        for table in ("resources", "resource_history"):
            await _add_access_columns(conn, table)
        await conn.execute(
            "CREATE INDEX IF NOT EXISTS resources_by_patient ON resources (res_type, patient)"
        )
        for statement in _DIALECT_STATEMENTS[db.dialect]:
            await conn.execute(statement)
