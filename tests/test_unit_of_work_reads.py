"""A unit of work reads back the resources it wrote from what it stored, not from the
database: a referral's check reads the three attachments its transaction has just
created. What it reads must be exactly what the database holds within the transaction,
for every version it wrote (created, updated, deleted), in every entry of a transaction,
and never in the next transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.fhir.service import FhirService
from shared.fhir.unit_of_work import StoreUnitOfWork
from shared.store.stored import StoredResource
from tests.support import BACKENDS, store_database
from tests.test_engine import BasicDefinition, basic, request


@pytest.fixture(params=BACKENDS)
async def service(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FhirService]:
    async with store_database(request.param, tmp_path, "uowreads") as db:
        yield FhirService("unit", [BasicDefinition()], db, prefix="unit")


async def in_database(uow: StoreUnitOfWork, res_id: str) -> StoredResource | None:
    """What the database answers within the unit of work's transaction."""
    return await uow.data.store.read(uow.conn, "Basic", res_id)


async def test_a_written_version_is_read_back_as_the_database_holds_it(
    service: FhirService,
) -> None:
    async with service.unit_of_work(request("create")) as uow:
        created = await uow.save(basic("c1", id="b1"))
        assert await uow.read("Basic", "b1") is created
        assert await in_database(uow, "b1") == created

        changed = basic("c2", id="b1")
        updated = await uow.save(changed, previous=created)
        assert updated.version == 2
        assert await uow.read("Basic", "b1") is updated
        assert await in_database(uow, "b1") == updated

        entry = uow.bound(request("update"))
        assert await entry.read("Basic", "b1") is updated, "another entry of the transaction"
        lookup = await uow.lookup()("Basic", "b1")
        assert lookup is not None and lookup["code"]["coding"][0]["code"] == "c2"

    async with service.unit_of_work(request("delete")) as uow:
        assert uow.written == {}, "the next transaction starts from the database"
        stored = await uow.read("Basic", "b1")
        assert stored == updated
        assert stored is not None
        deleted = await uow.commit_version(
            BasicDefinition(), None, res_id="b1", previous=stored, context=uow.context(None, None)
        )
        assert deleted.deleted
        assert await uow.read("Basic", "b1") is deleted
        assert await in_database(uow, "b1") == deleted
        assert await uow.lookup()("Basic", "b1") is None


async def test_a_resource_not_written_is_read_from_the_database(service: FhirService) -> None:
    async with service.unit_of_work(request("create")) as uow:
        await uow.save(basic("c1", id="b1"))
    async with service.unit_of_work(request("create")) as uow:
        await uow.save(basic("c2", id="b2"))
        found = await uow.read("Basic", "b1")
        assert found is not None and found.version == 1
        assert set(uow.written) == {("Basic", "b2")}
        assert await uow.read("Basic", "nothing") is None
