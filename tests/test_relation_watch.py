"""The consent service's relation watch: each new (child, organisation) pair is recorded
once and its child's access state published again; events that show only pairs it has
recorded cost no transaction; and a batch handed over again after its republishing
failed republishes its children, although its relations were recorded by the first try."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from nats.aio.msg import Msg

from services.consent.relation_table import create_table
from services.consent.relations import RelationWatch
from shared.config import Settings
from shared.events import DomainEvent, EventAccess
from shared.store.database import Database, SqliteDatabase

pytestmark = pytest.mark.unit


class CountingDatabase:
    """The database, counting the transactions begun."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.dialect = db.dialect
        self.transactions = 0

    def transaction(self) -> Any:
        self.transactions += 1
        return self.db.transaction()

    def reader(self) -> Any:
        return self.db.reader()


class Handlers:
    def __init__(self, db: CountingDatabase) -> None:
        self.fhir = SimpleNamespace(db=db)
        self.republished: list[str] = []
        self.failing = False

    async def republish_all(self, patient_ids: Iterable[str]) -> None:
        if self.failing:
            raise RuntimeError("the directory is unavailable")
        self.republished += list(patient_ids)


@pytest.fixture
async def watch(tmp_path: Path) -> AsyncIterator[tuple[RelationWatch, Handlers]]:
    db = await SqliteDatabase.connect(tmp_path / "relations.sqlite")
    await create_table(db)
    handlers = Handlers(CountingDatabase(db))
    settings = Settings(nats_prefix="unit")
    try:
        yield RelationWatch(handlers, None, settings), handlers  # type: ignore[arg-type]
    finally:
        await db.close()


def message(patient: str, parties: list[str], delivered: int = 1) -> Msg:
    event = DomainEvent(
        type="referral.Task.updated",
        source="referral",
        resource_type="Task",
        resource_id="t1",
        version_id="2",
        patient=patient,
        access=EventAccess(category="referral", author=parties[0], parties=parties),
    )
    reply = f"$JS.ACK.S.C.{delivered}.10.10.1700000000000000000.0"
    data = event.model_dump_json().encode()
    return Msg(_client=None, subject="unit.events.x", reply=reply, data=data)  # type: ignore[arg-type]


async def test_known_pairs_cost_no_transaction(watch: tuple[RelationWatch, Handlers]) -> None:
    relation_watch, handlers = watch
    db = handlers.fhir.db
    await relation_watch.on_events([message("c1", ["910000001", "910000002"])])
    assert (handlers.republished, db.transactions) == (["c1"], 1)
    await relation_watch.on_events([message("c1", ["910000002", "910000001"])])
    assert (handlers.republished, db.transactions) == (["c1"], 1)
    await relation_watch.on_events([message("c1", ["910000001", "910000003"])])
    assert (handlers.republished, db.transactions) == (["c1", "c1"], 2)


async def test_a_batch_again_after_a_failed_republish_republishes(
    watch: tuple[RelationWatch, Handlers],
) -> None:
    relation_watch, handlers = watch
    handlers.failing = True
    with pytest.raises(RuntimeError):
        await relation_watch.on_events([message("c2", ["910000001"])])
    handlers.failing = False
    await relation_watch.on_events([message("c2", ["910000001"], delivered=2)])
    assert handlers.republished == ["c2"]
    await relation_watch.on_events([message("c2", ["910000001"])])
    assert handlers.republished == ["c2"]
