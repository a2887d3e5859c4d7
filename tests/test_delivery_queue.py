"""The delivery queue's lease and numbering statements, on both backends (PostgreSQL
takes `number` and `delivered` as one statement each, SQLite as several): only the
lease's holder numbers, numbers run on without gaps, withheld events are never numbered,
and what is delivered is marked sent with the subscription's row given back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.subscriptions.queue import DeliveryQueue, create_queue_tables
from shared.store.database import Database, SqliteDatabase
from tests.support import schema_database

SUBSCRIPTION = "s1"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
async def queue(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DeliveryQueue]:
    made = DeliveryQueue()
    if request.param == "sqlite":
        db: Database = await SqliteDatabase.connect(tmp_path / "queue.sqlite")
        made.db = db
        await create_queue_tables(db)
        try:
            yield made
        finally:
            await db.close()
        return
    async with schema_database("queue") as db:
        made.db = db
        await create_queue_tables(db)
        yield made


async def queued(queue: DeliveryQueue, events: int) -> list[int]:
    async with queue.db.transaction() as conn:
        resource = {"resourceType": "Subscription", "status": "active"}
        await queue.sync(conn, SUBSCRIPTION, "910000012", "bup", resource, restart=True)
        await queue.enqueue(conn, [(SUBSCRIPTION, f"e{n}", b"{}") for n in range(events)])
    return [event.seq for event in await queue.pending(SUBSCRIPTION, 100)]


async def states(queue: DeliveryQueue) -> dict[int, tuple[str, int | None]]:
    async with queue.db.reader() as conn:
        rows = await conn.fetch("SELECT seq, state, number FROM subscription_event")
    return {int(r[0]): (str(r[1]), None if r[2] is None else int(r[2])) for r in rows}


async def test_only_the_holder_numbers_and_numbers_run_on(queue: DeliveryQueue) -> None:
    seqs = await queued(queue, 5)
    claimed = await queue.claim(SUBSCRIPTION, "a", 30)
    assert claimed is not None and claimed.subscription == SUBSCRIPTION
    assert claimed.events_since_start == 0
    assert await queue.claim(SUBSCRIPTION, "b", 30) is None, "a live lease is not taken"

    assert await queue.number(SUBSCRIPTION, "a", [seqs[0]], seqs[1:3]) == {seqs[1]: 1, seqs[2]: 2}
    assert await queue.number(SUBSCRIPTION, "b", [], seqs[3:]) is None, "b holds no lease"
    assert await queue.number(SUBSCRIPTION, "a", [seqs[3]], []) == {}
    assert await queue.number(SUBSCRIPTION, "a", [], seqs[4:]) == {seqs[4]: 3}
    assert await states(queue) == {
        seqs[0]: ("withheld", None),
        seqs[1]: ("pending", 1),
        seqs[2]: ("pending", 2),
        seqs[3]: ("withheld", None),
        seqs[4]: ("pending", 3),
    }

    row = await queue.delivered(SUBSCRIPTION, [seqs[1], seqs[2]])
    assert row is not None and row.events_since_start == 3 and row.last_sent is not None
    assert row.failures == 0
    after = await states(queue)
    assert (after[seqs[1]][0], after[seqs[2]][0], after[seqs[4]][0]) == ("sent", "sent", "pending")

    await queue.release(SUBSCRIPTION, "a", None)
    again = await queue.claim(SUBSCRIPTION, "b", 30)
    assert again is not None and again.events_since_start == 3


async def test_delivered_clears_failures(queue: DeliveryQueue) -> None:
    await queued(queue, 1)
    failing = await queue.failed(SUBSCRIPTION, "the partner answered 503", 60)
    assert failing is not None and failing.failures == 1
    row = await queue.delivered(SUBSCRIPTION, [])
    assert row is not None and (row.failures, row.last_error, row.failing_since) == (0, None, None)
    assert await queue.delivered("no-such-subscription", []) is None
