"""A committed unit of work wakes the outbox relay exactly when it put a message in the
outbox: a resource whose change raises events, or an event added by hand; not a
transaction that stored only resources without events (the audit trail's AuditEvents) or
wrote nothing. Waking the relay for nothing costs it a transaction that finds nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.events import DomainEvent
from shared.fhir.definitions import Change, EventSpec
from shared.fhir.service import FhirService
from shared.store.database import Database
from tests.support import BACKENDS, store_database
from tests.test_engine import BasicDefinition, basic, request


class SilentBasic(BasicDefinition):
    """A Basic whose changes raise no events."""

    def events(self, change: Change) -> list[EventSpec]:
        return []


@pytest.fixture(params=BACKENDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with store_database(request.param, tmp_path, "relaywake") as db:
        yield db


class Wakes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def service(db: Database, definition: BasicDefinition, wakes: Wakes) -> FhirService:
    return FhirService("unit", [definition], db, prefix="unit", on_commit=wakes)


async def outbox_rows(db: Database) -> int:
    async with db.reader() as conn:
        row = await conn.fetchrow("SELECT COUNT(*) FROM outbox")
    return int(row[0]) if row else 0


async def test_a_write_with_events_wakes_the_relay(database: Database) -> None:
    wakes = Wakes()
    fhir = service(database, BasicDefinition(), wakes)
    async with fhir.unit_of_work(request("create")) as uow:
        await uow.save(basic("single"))
    assert (wakes.count, await outbox_rows(database)) == (1, 1)
    async with fhir.unit_of_work(request("create")) as uow:
        await uow.save_new([basic("a", id="a"), basic("b", id="b")])
    assert (wakes.count, await outbox_rows(database)) == (2, 3)


async def test_an_added_event_wakes_the_relay(database: Database) -> None:
    wakes = Wakes()
    fhir = service(database, SilentBasic(), wakes)
    event = DomainEvent(
        type="unit.Basic.noted",
        source="unit",
        resource_type="Basic",
        resource_id="x",
        version_id="1",
    )
    async with fhir.unit_of_work(request("create")) as uow:
        await uow.add_event(event)
    assert (wakes.count, await outbox_rows(database)) == (1, 1)


async def test_a_write_without_events_leaves_the_relay_asleep(database: Database) -> None:
    wakes = Wakes()
    fhir = service(database, SilentBasic(), wakes)
    async with fhir.unit_of_work(request("create")) as uow:
        await uow.save(basic("single"))
    async with fhir.unit_of_work(request("create")) as uow:
        await uow.save_new([basic("a", id="a"), basic("b", id="b")])
    async with fhir.unit_of_work(request("create")):
        pass
    async with database.reader() as conn:
        stored = await conn.fetchrow("SELECT COUNT(*) FROM resources")
    assert stored is not None and int(stored[0]) == 3
    assert (wakes.count, await outbox_rows(database)) == (0, 0)
