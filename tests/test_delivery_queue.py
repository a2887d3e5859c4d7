"""The delivery queue's lease and numbering statements, on both backends (PostgreSQL
takes `number` and `delivered` as one statement each, SQLite as several): only the
lease's holder numbers, numbers run on without gaps, withheld events are never numbered,
what is delivered is marked sent with the subscription's row given back, and a batch is
read with the row as it is then."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.subscriptions.queue import DeliveryQueue, QueuedEvent, create_queue_tables
from tests.support import BACKENDS, backend_database

SUBSCRIPTION = "s1"


@pytest.fixture(params=BACKENDS)
async def queue(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DeliveryQueue]:
    async with backend_database(request.param, tmp_path, "queue") as db:
        made = DeliveryQueue()
        made.db = db
        await create_queue_tables(db)
        yield made


async def _pending(queue: DeliveryQueue, limit: int = 100) -> list[QueuedEvent]:
    found = await queue.next_batch(SUBSCRIPTION, limit)
    assert found is not None
    return found[1]


async def queued(queue: DeliveryQueue, events: int) -> list[int]:
    async with queue.db.transaction() as conn:
        resource = {"resourceType": "Subscription", "status": "active"}
        await queue.sync(conn, SUBSCRIPTION, "910000012", "bup", resource, restart=True)
    assert await queue.lead_fanout("fan-out", 30, 1) == 0
    matched = [(SUBSCRIPTION, f"e{n}", b"{}") for n in range(events)]
    assert await queue.queue_matched("fan-out", 30, 1, matched)
    return [event.seq for event in await _pending(queue)]


async def test_matched_events_are_queued_once_in_order_by_the_leader_only(
    queue: DeliveryQueue,
) -> None:
    seqs = await queued(queue, 3)
    async with queue.db.reader() as conn:
        order = [
            r[0] for r in await conn.fetch("SELECT event_id FROM subscription_event ORDER BY seq")
        ]
    assert order == ["e0", "e1", "e2"] and len(seqs) == 3
    again = [(SUBSCRIPTION, "e2", b"{}"), (SUBSCRIPTION, "e3", b"{}")]
    assert await queue.queue_matched("fan-out", 30, 2, again)
    assert len(await _pending(queue)) == 4, "e2 once, e3 added"
    assert not await queue.queue_matched("fan-out", 30, 2, []), "a watermark moves forward only"
    assert not await queue.queue_matched("another", 30, 3, [(SUBSCRIPTION, "e4", b"{}")])
    assert len(await _pending(queue)) == 4, "not the leader: nothing queued"
    async with queue.db.reader() as conn:
        watermark = await conn.fetchrow("SELECT watermark FROM fanout_state")
    assert watermark is not None and int(watermark[0]) == 2
    assert await queue.due(10) == [SUBSCRIPTION]


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


async def test_a_batch_comes_with_the_row_as_it_is_now(queue: DeliveryQueue) -> None:
    seqs = await queued(queue, 4)
    assert [event.seq for event in await _pending(queue, 3)] == seqs[:3], "first, in order"
    async with queue.db.transaction() as conn:
        resource = {"resourceType": "Subscription", "status": "off"}
        await queue.sync(conn, SUBSCRIPTION, "910000012", "bup", resource, restart=False)
    found = await queue.next_batch(SUBSCRIPTION, 10)
    assert found is not None
    row, events = found
    assert row.status == "off" and row.resource["status"] == "off", "the partner's change"
    assert [event.seq for event in events] == seqs

    claimed = await queue.claim(SUBSCRIPTION, "a", 30)
    assert claimed is not None
    assert await queue.number(SUBSCRIPTION, "a", [seqs[0]], seqs[1:]) is not None
    await queue.delivered(SUBSCRIPTION, seqs[1:])
    emptied = await queue.next_batch(SUBSCRIPTION, 10)
    assert emptied is not None and emptied[1] == [], "nothing pending: the row alone"
    assert emptied[0].events_since_start == 3
    assert await queue.next_batch("no-such-subscription", 10) is None
