"""The data migrations of a service's stored resources, applied once at start-up.

`search-index:<Type>:<param>:<paths>` indexes the stored resources of a type for a search
parameter, so that one declared (or given other paths) after resources were stored finds
them too.

`access-columns:<Type>:<category>` gives the access columns (`shared.store.access_sql`) to
stored versions of a type written before it held patient data: until then they would
count as not being about a patient. It runs once per type and category and is recorded
(`shared.store.migrations`), so a start scans nothing that was migrated before.

`unique-keys:<Type>:<key name>` gives stored resources a kind of business key declared
after they were stored (`ResourceDefinition.added_keys`), so that it is unique for them
too.
"""

from __future__ import annotations

import logging
from functools import partial

import orjson

from shared.fhir.definitions import ResourceDefinition
from shared.fhir.search_params import SearchParam, index_values
from shared.fhir.service_data import ServiceData
from shared.store.access_sql import ResourceAccess
from shared.store.database import Connection
from shared.store.migrations import Migration, apply_once

log = logging.getLogger(__name__)


async def fill_access_columns(conn: Connection, *, definition: ResourceDefinition) -> int:
    """Give the access columns to the stored versions of a patient-data type that have
    none; returns how many versions were filled in."""
    category = definition.data_category
    if category is None:
        return 0
    filled = 0
    for table in ("resources", "resource_history"):
        rows = await conn.fetch(
            f"SELECT res_id, version, body FROM {table} WHERE res_type = ? AND category IS NULL",
            definition.resource_type,
        )
        for res_id, version, body in rows:
            access = ResourceAccess(category=category)
            if body is not None:
                resource = orjson.loads(body)
                access = ResourceAccess(
                    patient=definition.patient_of(resource, res_id),
                    category=definition.category_of(resource),
                    parties=tuple(definition.parties(resource)),
                )
            # The author is whoever wrote the first version: an old version without one
            # shares the current row's.
            filled += await conn.execute(
                f"UPDATE {table} SET patient = ?, category = ?, parties = ?,"
                " author = COALESCE(author, (SELECT r.author FROM resources r"
                f" WHERE r.res_type = {table}.res_type AND r.res_id = {table}.res_id))"
                " WHERE res_type = ? AND res_id = ? AND version = ?",
                access.patient, access.category, access.parties_text,
                definition.resource_type, res_id, version,
            )  # fmt: skip
    return filled


async def index_param(conn: Connection, *, resource_type: str, param: SearchParam) -> int:
    """Index the current versions of a type for one search parameter (again): for a
    parameter declared after resources of the type were stored. Returns the index rows
    written."""
    await conn.execute(
        "DELETE FROM search_index WHERE res_type = ? AND (param = ? OR param LIKE ?)",
        resource_type, param.name, f"{param.name}:%",
    )  # fmt: skip
    rows: list[tuple[object, ...]] = []
    stored = await conn.fetch(
        "SELECT res_id, body FROM resources WHERE res_type = ? AND deleted = 0", resource_type
    )
    for res_id, body in stored:
        for value in index_values(param, orjson.loads(body)):
            rows.append(
                (resource_type, res_id, param.name + value.qualifier,
                 value.system, value.value, value.lo, value.hi)
            )  # fmt: skip
    await conn.executemany(
        "INSERT INTO search_index (res_type, res_id, param, system, value, lo, hi)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    return len(rows)


async def fill_unique_keys(
    conn: Connection, *, definition: ResourceDefinition, key_name: str
) -> int:
    """Give the stored resources of a type their keys of a kind added later; where two
    already hold the same key, the first keeps it (logged: the operator resolves it)."""
    stored = await conn.fetch(
        "SELECT res_id, body FROM resources WHERE res_type = ? AND deleted = 0 ORDER BY res_id",
        definition.resource_type,
    )
    filled = 0
    for res_id, body in stored:
        for name, value in definition.unique_keys(orjson.loads(body)):
            if name != key_name:
                continue
            added = await conn.execute(
                "INSERT INTO unique_keys (key_name, key_value, res_type, res_id)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (key_name, key_value) DO NOTHING",
                name, value, definition.resource_type, res_id,
            )  # fmt: skip
            holder = await conn.fetchrow(
                "SELECT res_type, res_id FROM unique_keys WHERE key_name = ? AND key_value = ?",
                name, value,
            )  # fmt: skip
            if holder is not None and tuple(holder) != (definition.resource_type, res_id):
                log.warning(
                    "%s/%s holds %s %s that %s/%s holds too; only one may",
                    definition.resource_type, res_id, name, value, holder[0], holder[1],
                )  # fmt: skip
            filled += added
    return filled


def _migrations(definitions: dict[str, ResourceDefinition]) -> dict[str, Migration]:
    """Every migration the definitions call for, by name."""
    found: dict[str, Migration] = {}
    for definition in definitions.values():
        if definition.data_category is not None:
            name = f"access-columns:{definition.resource_type}:{definition.data_category}"
            found[name] = partial(fill_access_columns, definition=definition)
        for param in definition.search_params:
            name = f"search-index:{definition.resource_type}:{param.name}:{param.paths}"
            found[name] = partial(index_param, resource_type=definition.resource_type, param=param)
        for key_name in definition.added_keys:
            name = f"unique-keys:{definition.resource_type}:{key_name}"
            found[name] = partial(fill_unique_keys, definition=definition, key_name=key_name)
    return found


async def migrate(data: ServiceData) -> dict[str, int]:
    """Apply the migrations this service's definitions call for that its database has not
    recorded; returns the rows each one it ran changed."""
    return await apply_once(data.db, _migrations(data.definitions))
