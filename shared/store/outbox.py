"""Transactional outbox: events are written with the resource change, published later.

`add_event` inserts the event in the caller's transaction, so a resource write and its
event commit or roll back together. `OutboxRelay` publishes unsent rows to JetStream in
order, with the event id as `Nats-Msg-Id` (JetStream drops a duplicate within its window),
marks a row sent only after the publish ack, and backs off while NATS is unavailable. It
reads again at once only after a full batch; otherwise it waits for the next commit in
its process (which wakes it) or its poll (another instance's commits). On PostgreSQL one
instance publishes at a time; one that finds another publishing tries again shortly.
`drained` waits until given rows (or every row committed before it was called) have been
published: a write whose answer promises its messages are out (a consent withdrawal's new
access state) waits for its own, however another patient's publishing fares.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from datetime import timedelta

import orjson
from opentelemetry import trace

from shared import clock
from shared.clock import now_instant, seconds_since
from shared.events import DomainEvent
from shared.fhir.search_params import format_instant
from shared.metrics import exporting, outbox_backlog, outbox_publish_lag, outbox_published
from shared.store.database import Connection, Database, Row
from shared.telemetry import span, trace_context, tracing
from shared.transport.stopping import stop_task

log = logging.getLogger(__name__)
tracer = trace.get_tracer("barnebro.outbox")

PRUNE_EVERY_SECONDS = 600.0

Publish = Callable[[str, bytes, dict[str, str]], Awaitable[None]]
PATIENT_LOCK = "pg_advisory_xact_lock(hashtext(current_schema()), hashtext(?))"
"""A patient's lock within this service's schema: services sharing a PostgreSQL database
must not wait on each other's patient locks (one may be waiting for the other's answer)."""


@dataclass
class _Drain:
    """A caller of `OutboxRelay.drained`: the first pass that may answer it, the rows it
    still waits for (None: everything committed before it), and its answer."""

    begun_after: int
    rows: set[int] | None
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass(frozen=True)
class Message:
    """One message for the outbox: its id (the `Nats-Msg-Id`), subject and payload, and
    the patient whose lock orders it (see `add_message`)."""

    message_id: str
    subject: str
    payload: bytes
    patient: str | None


def event_message(event: DomainEvent, prefix: str) -> Message:
    return Message(event.id, event.subject(prefix), event.model_dump_json().encode(), event.patient)


async def add_event(conn: Connection, event: DomainEvent, prefix: str) -> None:
    """Record an event in the current transaction."""
    message = event_message(event, prefix)
    await add_message(conn, message.message_id, message.subject, message.payload, message.patient)


async def add_message(
    conn: Connection,
    message_id: str,
    subject: str,
    payload: bytes,
    patient: str | None,
    *,
    before_answer: bool = False,
) -> None:
    """Record any JetStream message (an event, a key-value put) in the current transaction;
    `before_answer`: the request's answer waits until it is published (`drained`).

    The relay publishes in `seq` order, but PostgreSQL hands out `seq` at insert time, not
    at commit. Writers that touch the same patient therefore take a transaction lock on
    the patient first, so that one patient's messages get `seq` values in commit order and
    are published in that order. (SQLite has a single writer: nothing to do.) The relay
    keeps the order of messages whose subjects end in the same token (the patient's).
    """
    values: tuple[object, ...] = (message_id, subject, payload, now_instant())
    conn.outbox_written = True
    insert = "INSERT INTO outbox (event_id, subject, payload, created) VALUES (?, ?, ?, ?)"
    if patient is not None and conn.dialect == "postgresql":
        # One round trip: the lock is taken before the row (and its seq) is made.
        insert = (
            "INSERT INTO outbox (event_id, subject, payload, created) SELECT ?, ?, ?, ?"
            f" FROM (SELECT {PATIENT_LOCK}) AS patient_lock"
        )
        values = (*values, patient)
    if not before_answer:
        await conn.execute_later(insert, *values)
        return
    row = await conn.fetchrow(f"{insert} RETURNING seq", *values)
    assert row is not None
    conn.awaited_messages.append(int(row[0]))


async def lock_patient(conn: Connection, patient: str) -> None:
    """Serialise the transactions that change one patient's records (PostgreSQL; SQLite
    has one writer). The same lock `add_message` takes, taken earlier."""
    if conn.dialect == "postgresql":
        await conn.execute(f"SELECT {PATIENT_LOCK}", patient)


UNSENT_FUNCTION = """CREATE OR REPLACE FUNCTION outbox_unsent(p_limit INTEGER)
RETURNS TABLE(seq BIGINT, event_id TEXT, subject TEXT, payload BYTEA, created TEXT) AS $$
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext(current_schema() || '.outbox')) THEN
        RETURN QUERY SELECT NULL::BIGINT, NULL::TEXT, NULL::TEXT, NULL::BYTEA, NULL::TEXT;
        RETURN;
    END IF;
    RETURN QUERY SELECT o.seq::BIGINT, o.event_id, o.subject, o.payload, o.created
        FROM outbox o WHERE o.sent_at IS NULL ORDER BY o.seq LIMIT p_limit;
END $$ LANGUAGE plpgsql VOLATILE"""
"""The relay's pass begins (PostgreSQL): the transaction-scoped lock that makes one
instance the publisher at a time, then the oldest unsent rows, in one round trip; a row
of nulls when another instance holds the lock. The rows are read by a query after the lock
is taken: a function's queries each see what was committed when they begin (it is
VOLATILE), so they see what the previous holder marked sent before it let go."""

BUSY_RETRY_SECONDS = 0.01
"""How soon a relay that found another instance publishing tries again (the other may
have read its rows before this instance's commit), doubling while it stays busy, up to
the poll interval."""


class OutboxRelay:
    """Publishes the outbox of one service's database, oldest first."""

    def __init__(
        self,
        db: Database,
        publish: Publish,
        *,
        poll_interval: float,
        max_backoff: float,
        batch_size: int = 200,
        linger: float = 0.005,
        retention: timedelta = timedelta(days=7),
    ) -> None:
        self._linger = linger
        self._retention = retention
        self._pruned_at = 0.0
        self._db = db
        self._publish = publish
        self._poll_interval = poll_interval
        self._max_backoff = max_backoff
        self._batch_size = batch_size
        self._wake = asyncio.Event()
        self.published = 0
        self._passes_begun = 0
        self._draining: list[_Drain] = []
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        """Run the relay in a task of its own until `stop`."""
        self._stopping = False
        self._task = asyncio.create_task(self.run(), name="outbox relay")

    async def stop(self) -> None:
        """End the relay's task. A cancellation that nats-py swallows inside a publish
        (`shared.transport.stopping`) still ends it: the loop checks a flag of its own."""
        self._stopping = True
        self.notify()
        await stop_task(self._task)
        self._task = None

    def notify(self) -> None:
        """Tell the relay that new rows were committed."""
        self._wake.set()

    async def drained(self, rows: Collection[int] | None = None) -> None:
        """Wait until the outbox rows `rows` (their `seq`), committed before this call, are
        published; without `rows`, every row committed before it. Waits for as long as
        publishing them fails; the caller bounds it."""
        waiting = _Drain(self._passes_begun + 1, None if rows is None else set(rows))
        self._draining.append(waiting)
        self.notify()
        try:
            await waiting.done
        finally:
            self._draining.remove(waiting)

    def _published(
        self, number: int, rows: list[Row], sent: list[int], failure: BaseException | None
    ) -> None:
        """After pass `number` read `rows` and published `sent` of them: answer those who
        waited for what is now published, before the rows are marked sent (a row published
        and not yet marked is published again, and JetStream drops the duplicate). A row
        committed before the pass began is among those it read unless it was published
        before, or the batch was full and it comes after the last row read."""
        if not self._draining:
            return
        full = len(rows) >= self._batch_size
        read = {int(row[0]) for row in rows}
        last_read = max(read, default=0)
        for drain in self._draining:
            if drain.done.done():
                continue
            if drain.rows is None:
                if number >= drain.begun_after and failure is None and not full:
                    drain.done.set_result(None)
                continue
            drain.rows.difference_update(sent)
            if number >= drain.begun_after:
                drain.rows = {
                    seq for seq in drain.rows if seq in read or (full and seq > last_read)
                }
            if not drain.rows:
                drain.done.set_result(None)

    async def run(self) -> None:
        failures = busy = 0
        while not self._stopping:
            try:
                sent = await self.publish_pending()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                delay = min(self._max_backoff, 0.05 * 2**failures) * random.uniform(0.5, 1.0)
                log.warning("outbox publish failed (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                continue
            if sent is None:
                backoff = 0 if self._draining else busy  # an answer waits: no backing off
                await asyncio.sleep(min(self._poll_interval, BUSY_RETRY_SECONDS * 2**backoff))
                busy = min(busy + 1, 16)
                continue
            busy = 0
            if sent == self._batch_size:
                continue  # more may be waiting already
            # A batch that was not full took every row committed before it was read. A
            # row committed since is either this process's (its commit set the wake, so
            # the wait below ends at once) or another instance's (the poll finds it).
            if time.monotonic() - self._pruned_at > PRUNE_EVERY_SECONDS:
                with contextlib.suppress(Exception):  # pruning is housekeeping only
                    await self.prune()
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
            # cancellation that arrives as the wait ends, and stop() would wait for ever.
            try:
                async with asyncio.timeout(self._poll_interval):
                    await self._wake.wait()
            except TimeoutError:
                pass
            else:
                if not self._draining:  # an answer waits: no linger
                    await asyncio.sleep(self._linger)  # let concurrent commits join the batch
            self._wake.clear()

    async def prune(self) -> int:
        """Forget events published longer ago than the retention period."""
        self._pruned_at = time.monotonic()
        cutoff = format_instant(clock.now() - self._retention)
        async with self._db.transaction() as conn:
            return await conn.execute(
                "DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ?", cutoff
            )

    async def publish_pending(self) -> int | None:
        """Publish one batch; return how many rows were sent, or None if another instance
        is publishing this outbox (PostgreSQL)."""
        self._passes_begun += 1
        number = self._passes_begun
        if self._db.dialect == "postgresql":
            # One instance publishes at a time (`UNSENT_FUNCTION`); the others find it
            # publishing and try again shortly.
            async with self._db.transaction() as conn:
                rows = await conn.fetch("SELECT * FROM outbox_unsent(?)", self._batch_size)
                if rows and rows[0][0] is None:
                    return None
                sent, failure = await self._publish_rows(rows)
                self._published(number, rows, sent, failure)
                await self._mark_sent(conn, sent)
        else:
            # SQLite has a single writer: never hold its lock while waiting on the network.
            async with self._db.reader() as conn:
                rows = await self._unsent(conn)
            sent, failure = await self._publish_rows(rows)
            self._published(number, rows, sent, failure)
            if sent:
                async with self._db.transaction() as conn:
                    await self._mark_sent(conn, sent)
        self.published += len(sent)
        outbox_published.add(len(sent))
        await self._measure_backlog(len(rows) - len(sent), full=len(rows) == self._batch_size)
        if failure is not None:
            raise failure
        return len(sent)

    async def backlog(self) -> int:
        """Events committed and not yet published."""
        async with self._db.reader() as conn:
            row = await conn.fetchrow("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL")
        return int(row[0]) if row else 0

    async def _measure_backlog(self, left: int, *, full: bool) -> None:
        """The backlog gauge: what a batch left, or (after a full batch, when more may
        wait, and only while metrics are exported) a count."""
        if full:
            if not exporting():
                return
            left = await self.backlog()
        outbox_backlog.set(left)

    async def _unsent(self, conn: Connection) -> list[Row]:
        return await conn.fetch(
            "SELECT seq, event_id, subject, payload, created FROM outbox"
            " WHERE sent_at IS NULL ORDER BY seq LIMIT ?",
            self._batch_size,
        )

    async def _mark_sent(self, conn: Connection, sent: list[int]) -> None:
        if sent:
            marks = ", ".join("?" * len(sent))
            await conn.execute(
                f"UPDATE outbox SET sent_at = ? WHERE seq IN ({marks})", now_instant(), *sent
            )

    async def _publish_rows(self, rows: list[Row]) -> tuple[list[int], BaseException | None]:
        """Partitions (the subject's last token: one patient) are published concurrently;
        the events of one partition one after another, stopping at the first failure, so a
        retry can never put one patient's events out of order."""
        partitions: dict[str, list[Row]] = {}
        for row in rows:
            partitions.setdefault(str(row[2]).rsplit(".", 1)[-1], []).append(row)

        async def publish_partition(part: list[Row]) -> tuple[list[int], BaseException | None]:
            done: list[int] = []
            for seq, event_id, subject, payload, created in part:
                try:
                    await self._publish_one(event_id, subject, bytes(payload))
                except Exception as exc:
                    return done, exc
                done.append(seq)
                outbox_publish_lag.record(seconds_since(created))
            return done, None

        results = await asyncio.gather(*(publish_partition(p) for p in partitions.values()))
        sent = [seq for done, _ in results for seq in done]
        return sent, next((failure for _, failure in results if failure is not None), None)

    async def _publish_one(self, event_id: str, subject: str, payload: bytes) -> None:
        if not tracing():  # the payload is not parsed for a trace context nobody records
            await self._publish(subject, payload, {"Nats-Msg-Id": event_id})
            return
        with span(
            tracer,
            "outbox publish",
            kind=trace.SpanKind.PRODUCER,
            parent=orjson.loads(payload).get("trace_context") or {},
            attributes={"messaging.destination.name": subject, "messaging.message.id": event_id},
        ):
            await self._publish(subject, payload, {"Nats-Msg-Id": event_id, **trace_context()})
