"""The data migrations of a service's stored resources, applied once at start-up.

`access-columns:<Type>:<category>` gives the access columns (`shared.store.access_sql`) to
stored versions of a type written before it held patient data: until then they would
count as not being about a patient. It runs once per type and category and is recorded
(`shared.store.migrations`), so a start scans nothing that was migrated before.
"""

from __future__ import annotations

import orjson

from shared.fhir.definitions import ResourceDefinition
from shared.fhir.service_data import ServiceData
from shared.store.access_sql import ResourceAccess
from shared.store.database import Connection
from shared.store.migrations import apply_once


async def fill_access_columns(conn: Connection, definition: ResourceDefinition) -> int:
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


async def migrate(data: ServiceData) -> int:
    """Apply the migrations this service's definitions call for that its database has not
    recorded; returns how many stored versions they changed."""
    changed = 0
    for definition in data.definitions.values():
        if definition.data_category is None:
            continue
        name = f"access-columns:{definition.resource_type}:{definition.data_category}"

        async def migration(conn: Connection, definition: ResourceDefinition = definition) -> int:
            return await fill_access_columns(conn, definition)

        changed += await apply_once(data.db, name, migration) or 0
    return changed
