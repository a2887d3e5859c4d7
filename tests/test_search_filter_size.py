"""A search filter's size does not depend on how many patients the caller may see.

A GP, a barnevernstjeneste (child welfare service) or a municipality may see tens of
thousands of children. Their search filter sends those patients as one parameter, so a
search works past PostgreSQL's 32,767 parameters, and a search by patient sends only the
patients it is about. Run on PostgreSQL and on SQLite, with the store's own search.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from pathlib import Path

import pytest

from services.directory.resources import RelatedPersonDefinition
from shared.codes import PERSON_CATEGORY
from shared.fhir.search_query import parse_search
from shared.store.access_sql import AccessFilter, ResourceAccess
from shared.store.database import Database, SqliteDatabase
from shared.store.resource_store import ResourceStore
from shared.store.schema import create_schema
from shared.store.search_sql import build_search
from tests.support import schema_database

pytestmark = pytest.mark.services

PARAMS = {
    "RelatedPerson": RelatedPersonDefinition(enforce_orgnr_check_digit=False).params_by_name()
}
STORE = ResourceStore(PARAMS)
MANY = tuple(f"child-{n:05d}" for n in range(40_000))
"""More patients than a statement may have parameters."""


@pytest.fixture(params=["postgresql", "sqlite"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        db = await SqliteDatabase.connect(tmp_path / "store.sqlite3")
        try:
            yield db
        finally:
            await db.close()
        return
    async with schema_database("t_filter_size") as pg:
        yield pg


async def _parents_of(db: Database, *children: str) -> None:
    async with db.transaction() as conn:
        for child in children:
            parent = {
                "resourceType": "RelatedPerson",
                "patient": {"reference": f"Patient/{child}"},
                "name": [{"family": "Nordmann", "given": [child]}],
            }
            access = ResourceAccess(patient=child, category=PERSON_CATEGORY, author="974760673")
            stored = STORE.next_version(
                parent, res_type="RelatedPerson", res_id=f"parent-of-{child}", previous=None,
                access=access,
            )  # fmt: skip
            await STORE.write_new(conn, [(stored, parent, ())])


async def _found(db: Database, params: list[tuple[str, str]], access: AccessFilter) -> set[str]:
    query = parse_search("RelatedPerson", params, PARAMS)

    def whole(res_type: str, patients: Collection[str] | None = None) -> AccessFilter:
        return access

    async with db.reader() as conn:
        page = await STORE.search(conn, query, access_for=whole)
    return {r.res_id for r in page.resources}


async def test_a_filter_of_more_patients_than_a_statement_has_parameters(
    database: Database,
) -> None:
    await create_schema(database)
    await _parents_of(database, "child-00007", "child-39999", "someone-else")
    allowed = AccessFilter(orgs=("999999999",), patients=MANY)
    found = await _found(database, [("name", "Nordmann")], allowed)
    assert found == {"parent-of-child-00007", "parent-of-child-39999"}
    by_patient = await _found(database, [("patient", "Patient/child-39999")], allowed)
    assert by_patient == {"parent-of-child-39999"}
    assert await _found(database, [("patient", "Patient/someone-else")], allowed) == set()


def test_a_search_by_patient_sends_only_that_patient() -> None:
    allowed = AccessFilter(orgs=("999999999",), patients=MANY, named_within=MANY)
    for value in ("Patient/child-00042", "child-00042"):
        query = parse_search("RelatedPerson", [("patient", value)], PARAMS)
        sql, args = build_search(query, PARAMS, access=allowed)
        assert '["child-00042"]' in args
        assert len(sql) + sum(len(str(a)) for a in args) < 2_000
    query = parse_search("RelatedPerson", [("name", "Nordmann")], PARAMS)
    _, args = build_search(query, PARAMS, access=allowed)
    assert any(isinstance(a, str) and a.count("child-") == len(MANY) for a in args)
