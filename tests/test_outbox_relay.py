"""The outbox relay stops when asked, whenever the request comes; reads again at once
only after a full batch; and, beside another instance that is publishing, tries again
soon instead of at its next poll."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from shared.events import DomainEvent
from shared.store.database import Database, SqliteDatabase
from shared.store.outbox import OutboxRelay, add_event, add_message
from shared.store.schema import create_schema
from tests.support import BACKENDS, SwallowsItsCancellation, store_database, wait_for


async def test_relay_stops_on_cancel_even_as_a_wake_up_arrives(tmp_path: Path) -> None:
    """On Python 3.11, asyncio.wait_for could lose a cancellation that arrived while the
    awaited event was being set, leaving stop() waiting for ever."""
    db = await SqliteDatabase.connect(tmp_path / "relay.sqlite3")
    await create_schema(db)

    async def publish(subject: str, payload: bytes, headers: dict[str, str]) -> None:
        raise AssertionError("nothing to publish")

    rng = random.Random(7)
    try:
        for _ in range(300):
            relay = OutboxRelay(db, publish, poll_interval=0.001, max_backoff=0.01, linger=0)
            task = asyncio.create_task(relay.run())
            await asyncio.sleep(rng.random() * 0.003)
            relay.notify()
            for _ in range(rng.randint(0, 3)):
                await asyncio.sleep(0)
            task.cancel()
            async with asyncio.timeout(5):
                done, _ = await asyncio.wait({task})
            assert done == {task} and task.cancelled()
    finally:
        await db.close()


async def test_relay_stops_when_a_publish_swallows_the_cancellation(tmp_path: Path) -> None:
    """nats-py's publish can swallow a cancellation and return as if it had published: the
    relay then runs on, so `stop` ends it by a flag of its own, in a round, not for ever."""
    db = await SqliteDatabase.connect(tmp_path / "relay.sqlite3")
    await create_schema(db)
    relay = OutboxRelay(db, Published(), poll_interval=30, max_backoff=0.5, linger=0)
    swallowing = SwallowsItsCancellation()
    relay.publish_pending = swallowing  # type: ignore[method-assign]
    try:
        relay.start()
        async with asyncio.timeout(5):
            await swallowing.running.wait()
        async with asyncio.timeout(2):
            await relay.stop()
        assert swallowing.runs == 1, "the relay went on after it was told to stop"
    finally:
        await db.close()


@pytest.fixture(params=BACKENDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with store_database(request.param, tmp_path, "relay") as db:
        yield db


class Published:
    """The subjects the relay published."""

    def __init__(self) -> None:
        self.subjects: list[str] = []

    async def __call__(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        self.subjects.append(subject)


async def _committed(db: Database, relay: OutboxRelay, count: int, tag: str) -> None:
    """`count` events committed in one transaction, the relay told as a unit of work
    tells it."""
    async with db.transaction() as conn:
        for n in range(count):
            event = DomainEvent(type="unit.Basic.created", source="unit", resource_type="Basic",
                                resource_id=f"{tag}{n}", version_id="1")  # fmt: skip
            await add_event(conn, event, "unit")
    relay.notify()


@asynccontextmanager
async def _running(relay: OutboxRelay) -> AsyncIterator[list[int]]:
    """The relay at work; yields how many rows each of its rounds sent (-1: another
    instance was publishing)."""
    rounds: list[int] = []
    publish_pending = relay.publish_pending

    async def counted() -> int | None:
        sent = await publish_pending()
        rounds.append(-1 if sent is None else sent)
        return sent

    relay.publish_pending = counted  # type: ignore[method-assign]
    task = asyncio.create_task(relay.run())
    try:
        yield rounds
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_only_a_full_batch_is_followed_at_once_by_another_round(
    database: Database,
) -> None:
    """With a 30 s poll: a commit is published at once, in one round; a burst larger than a
    batch goes in full batches one after another, without waiting for the poll."""
    published = Published()
    relay = OutboxRelay(database, published, poll_interval=30, max_backoff=0.5, batch_size=3,
                        linger=0)  # fmt: skip
    async with _running(relay) as rounds:

        async def rounds_were(expected: list[int]) -> bool:
            return rounds == expected

        await wait_for(lambda: rounds_were([0]), 5)  # at start: nothing
        await _committed(database, relay, 1, "a")
        await wait_for(lambda: rounds_were([0, 1]), 5)
        await asyncio.sleep(0.2)
        assert rounds == [0, 1], "no round after the one that took everything"
        await _committed(database, relay, 7, "b")
        await wait_for(lambda: rounds_were([0, 1, 3, 3, 1]), 5)
        await asyncio.sleep(0.2)
        assert rounds == [0, 1, 3, 3, 1]
    assert len(published.subjects) == 8


@pytest.mark.services
async def test_a_relay_that_finds_another_publishing_tries_again_soon(tmp_path: Path) -> None:
    """PostgreSQL, two instances: while another holds the outbox's publisher lock, this
    relay's commit waits; once the lock is free it is published soon, not at the next
    poll (30 s)."""
    async with store_database("postgresql", tmp_path, "relaybusy") as db:
        published = Published()
        relay = OutboxRelay(db, published, poll_interval=30, max_backoff=0.5, linger=0)
        async with _running(relay) as rounds:

            async def started() -> bool:
                return rounds == [0]

            async def busy() -> bool:
                return -1 in rounds

            async def sent() -> bool:
                return len(published.subjects) == 1

            await wait_for(started, 5)
            async with db.transaction() as other:
                await other.execute(
                    "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.outbox'))"
                )
                await _committed(db, relay, 1, "c")
                await wait_for(busy, 5)
                assert published.subjects == [], "not while another publishes"
            await wait_for(sent, 5)


async def test_drained_returns_once_what_was_committed_before_it_is_published(
    database: Database,
) -> None:
    """`drained` waits for the rows committed before it, however long publishing takes,
    and not for the poll (30 s)."""
    published = Published()
    gate = asyncio.Event()

    async def held(subject: str, payload: bytes, headers: dict[str, str]) -> None:
        await gate.wait()
        await published(subject, payload, headers)

    relay = OutboxRelay(database, held, poll_interval=30, max_backoff=0.5, linger=0)
    async with _running(relay):
        await asyncio.wait_for(relay.drained(), 5)  # nothing committed: at once
        await _committed(database, relay, 3, "d")
        draining = asyncio.create_task(relay.drained())
        await asyncio.sleep(0.2)
        assert not draining.done(), "returned before its rows were published"
        assert published.subjects == []
        gate.set()
        await asyncio.wait_for(draining, 5)
        assert len(published.subjects) == 3


async def test_drained_does_not_take_a_round_begun_before_it_for_one_after(
    database: Database,
) -> None:
    """A round that read its rows before this commit does not count: `drained` waits for
    one begun after it."""
    published = Published()
    gate, holding = asyncio.Event(), asyncio.Event()

    async def held(subject: str, payload: bytes, headers: dict[str, str]) -> None:
        holding.set()
        await gate.wait()
        await published(subject, payload, headers)

    relay = OutboxRelay(database, held, poll_interval=30, max_backoff=0.5, linger=0)
    async with _running(relay):
        await _committed(database, relay, 1, "early")

        await asyncio.wait_for(holding.wait(), 5)  # a round holds the early row
        await _committed(database, relay, 1, "late")
        draining = asyncio.create_task(relay.drained())
        gate.set()
        await asyncio.wait_for(draining, 5)
        assert len(published.subjects) == 2, "returned before the late row was published"


async def test_drained_rows_are_answered_however_another_patients_publishing_fares(
    database: Database,
) -> None:
    """Waiting for its own rows, a write is answered once they are published, while
    another patient's row keeps failing (and so no pass ever publishes everything)."""
    published = Published()

    async def failing_for_one(subject: str, payload: bytes, headers: dict[str, str]) -> None:
        if subject.endswith(".stuck"):
            raise ConnectionError("this one is refused")
        await published(subject, payload, headers)

    relay = OutboxRelay(database, failing_for_one, poll_interval=30, max_backoff=0.05, linger=0)
    async with _running(relay):
        async with database.transaction() as conn:
            await add_message(conn, "m-stuck", "unit.events.stuck", b"{}", "stuck")
        async with database.transaction() as conn:
            await add_message(conn, "m-ours", "unit.events.ours", b"{}", "ours", before_answer=True)
            ours = list(conn.awaited_messages)
        assert len(ours) == 1
        await asyncio.wait_for(relay.drained(ours), 5)
        assert published.subjects == ["unit.events.ours"]
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(relay.drained(), 0.5)  # everything: never, while one fails
