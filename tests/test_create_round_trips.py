"""A client's create on PostgreSQL is one round trip when its transaction reads nothing.

The new version (with its unique keys, index rows and events) waits for the commit, and
the commit sends it alone, as one implicit transaction. A key another resource holds is
then raised by that statement and answered as before: 409, the holder named only where
the type allows, the refusal audited, nothing stored. What a create looks up before it
writes (the resources it refers to) is read outside its transaction, in a statement shared
with the reads by id of the moment, so it does not begin the transaction either; once a
transaction has sent a statement, its reads are made in it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from shared.fhir.definitions import Lookup, WriteContext
from shared.fhir.errors import Issue, error
from shared.fhir.router import FhirRouter
from shared.fhir.service import FhirService
from shared.store.schema import create_schema
from shared.transport.wire import FhirRequest, FhirResponse
from tests.support import schema_database, sent_statements
from tests.test_engine import BASE, CALLER, BasicDefinition, basic

pytestmark = pytest.mark.services


class ReferringBasic(BasicDefinition):
    """`Basic` whose `author` must name a stored Basic; one with the text `unique-text`
    may not share its code with another, as a search by code finds it."""

    async def check_write(self, resource: dict[str, Any], write: WriteContext) -> list[Issue]:
        code = resource["code"]["coding"][0]["code"]
        if resource["code"]["text"] == "unique-text" and await write.uow.find(
            "Basic", [("code", code)]
        ):
            raise error(409, "duplicate", f"{code} is taken")
        return await super().check_write(resource, write)

    async def verify_references(self, resource: dict[str, Any], lookup: Lookup) -> None:
        reference = (resource.get("author") or {}).get("reference")
        if reference and await lookup(*reference.split("/", 1)) is None:
            raise error(422, "invalid", f"{reference} does not exist")


@pytest.fixture
async def service() -> AsyncIterator[FhirService]:
    async with schema_database("t_create_rt") as db:
        await create_schema(db)
        yield FhirService("unit", [ReferringBasic()], db, prefix="unit")


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    return sent_statements(monkeypatch)


async def create(service: FhirService, resource: dict[str, Any]) -> FhirResponse:
    request = FhirRequest(interaction="create", resource_type="Basic", base_url=BASE, caller=CALLER)
    try:
        return await FhirRouter(service).handle(request, orjson.dumps(resource))
    except Exception as exc:  # the router raises its refusals; the test reads them
        status = getattr(exc, "status", 500)
        issues = getattr(exc, "issues", [])
        return FhirResponse(status=status, body=orjson.dumps([i.diagnostics for i in issues]))


def keyed(code: str, key: str) -> dict[str, Any]:
    resource = basic(code)
    resource["code"]["coding"].append({"system": "urn:unique", "code": key})
    return resource


def shapes(calls: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Each statement up to its first comma."""
    return [(sql.split(",")[0], rows) for sql, rows in calls]


async def stored(service: FhirService) -> list[tuple[str, int]]:
    async with service.db.reader() as conn:
        rows = await conn.fetch("SELECT res_id, version FROM resources ORDER BY res_id")
        events = await conn.fetch("SELECT count(*) FROM outbox")
    assert events[0][0] == len(rows), "one event per stored version, no more"
    return [(str(row[0]), int(row[1])) for row in rows]


async def test_a_create_that_claims_a_key_is_one_statement(
    service: FhirService, calls: list[tuple[str, int]]
) -> None:
    reply = await create(service, keyed("first", "K-1"))
    assert reply.status == 201, reply.body
    assert calls == [("executemany SELECT store_version_raising", 1)]
    res_id = orjson.loads(reply.body)["id"]
    assert await stored(service) == [(res_id, 1)]


async def test_a_key_another_resource_holds_is_refused_at_the_commit(
    service: FhirService, calls: list[tuple[str, int]]
) -> None:
    holder = orjson.loads((await create(service, keyed("first", "K-1"))).body)["id"]
    calls.clear()
    reply = await create(service, keyed("second", "K-1"))
    assert reply.status == 409, reply.body
    # Basic holds no information about a patient: the holder is named.
    assert orjson.loads(reply.body) == [
        f"basic-code K-1 is already registered on Basic/{holder};"
        " update that resource instead of creating another"
    ]
    assert calls == [("executemany SELECT store_version_raising", 1)]
    assert await stored(service) == [(holder, 1)]


async def test_a_create_that_looks_up_what_it_refers_to_reads_outside_its_transaction(
    service: FhirService, calls: list[tuple[str, int]]
) -> None:
    author = orjson.loads((await create(service, basic("author"))).body)["id"]
    calls.clear()
    reply = await create(service, {**basic("child"), "author": {"reference": f"Basic/{author}"}})
    assert reply.status == 201, reply.body
    assert shapes(calls) == [
        ("fetch SELECT r.res_type", 1),  # the shared reads by id (`ServiceData.current`)
        ("executemany SELECT store_version_raising", 1),
    ]
    calls.clear()
    missing = await create(service, {**basic("orphan"), "author": {"reference": "Basic/none"}})
    assert missing.status == 422, missing.body
    assert shapes(calls) == [("fetch SELECT r.res_type", 1)]
    assert len(await stored(service)) == 2


async def test_once_a_transaction_has_sent_a_statement_it_reads_in_it(
    service: FhirService,
) -> None:
    """A row the transaction changed without a version (so not in `written`) is seen by
    its reads only when they are made in it."""
    author = orjson.loads((await create(service, basic("author"))).body)["id"]
    request = FhirRequest(interaction="create", resource_type="Basic", base_url=BASE, caller=CALLER)
    async with service.unit_of_work(request) as uow:
        before = await uow.read("Basic", author)
        assert before is not None and not before.deleted
        await uow.conn.execute(
            "UPDATE resources SET deleted = 1 WHERE res_type = 'Basic' AND res_id = ?", author
        )
        after = await uow.read("Basic", author)
        assert after is not None and after.deleted
        await uow.conn.execute(
            "UPDATE resources SET deleted = 0 WHERE res_type = 'Basic' AND res_id = ?", author
        )


async def test_what_it_stored_before_sending_anything_is_read_back_from_it(
    service: FhirService, calls: list[tuple[str, int]]
) -> None:
    request = FhirRequest(interaction="create", resource_type="Basic", base_url=BASE, caller=CALLER)
    async with service.unit_of_work(request) as uow:
        saved = [await uow.save(basic(code)) for code in ("one", "two")]
        assert not uow.conn.opened and calls == []
        for written in saved:
            seen = await uow.read("Basic", written.res_id)
            assert seen is not None and seen.version == 1
    assert len(await stored(service)) == 2


async def test_a_search_before_the_transaction_has_sent_anything_does_not_begin_it(
    service: FhirService, calls: list[tuple[str, int]]
) -> None:
    first = await create(service, basic("u", text="unique-text"))
    assert first.status == 201, first.body
    calls.clear()
    again = await create(service, basic("u", text="unique-text"))
    assert again.status == 409, again.body
    assert [sql.split()[0] for sql, _ in calls] == ["fetch"]  # the search alone
    calls.clear()
    other = await create(service, basic("other"))
    assert other.status == 201 and calls == [("executemany SELECT store_version_raising", 1)]


async def test_a_search_after_a_write_waits_is_made_in_the_transaction_and_sees_it(
    service: FhirService,
) -> None:
    request = FhirRequest(interaction="create", resource_type="Basic", base_url=BASE, caller=CALLER)
    async with service.unit_of_work(request) as uow:
        await uow.save(basic("pending"))
        assert not uow.conn.opened
        found = await uow.find("Basic", [("code", "pending")])
        assert [f.json()["code"]["text"] for f in found] == ["pending"]
        assert await uow.existing("Basic", [found[0].res_id]) == {found[0].res_id}
