"""The delivery queue: what each subscription still has to receive, in order, durably.

`subscription_delivery` holds one row per subscription: its owner, status, the Subscription
as last written, how many events it has been numbered (`events_since_start`), its failures
and when it is next due, and a lease so that one instance at a time delivers it (another
takes over when a crashed instance's lease runs out). `subscription_event` holds the
events matched to it: `pending` until delivered (`sent`), or `withheld` when the consent
rules gave its owner no basis at delivery time. An event gets its number the first time it
is about to be sent, so numbers run without gaps over what a partner may see, and a retry
sends the same numbers again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from shared.fhir.search_params import format_instant
from shared.store.database import Connection, Database, Row

ACTIVE_STATUSES = ("requested", "active", "error")

_TABLES = {
    "postgresql": ("BIGSERIAL PRIMARY KEY", "BYTEA"),
    "sqlite": ("INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB"),
}


def instant(moment: datetime | None = None) -> str:
    """Real time, not the test clock (`shared.clock`): when a delivery is due, retried or
    given up concerns the partners' endpoints, which keep real time."""
    return format_instant(moment or datetime.now(UTC))


def parse_instant(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


def later(seconds: float) -> str:
    return instant(datetime.now(UTC) + timedelta(seconds=seconds))


async def create_queue_tables(db: Database) -> None:
    serial, blob = _TABLES[db.dialect]
    async with db.transaction() as conn:
        if db.dialect == "postgresql":
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema()))")
        await conn.execute(
            f"""CREATE TABLE IF NOT EXISTS subscription_delivery (
            subscription TEXT PRIMARY KEY, owner TEXT NOT NULL, owner_kind TEXT,
            status TEXT NOT NULL, resource {blob} NOT NULL, created TEXT NOT NULL,
            events_since_start BIGINT NOT NULL DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0,
            failing_since TEXT, last_error TEXT, due_at TEXT, lease_owner TEXT,
            lease_until TEXT, last_sent TEXT)"""
        )
        await conn.execute(
            "CREATE INDEX IF NOT EXISTS delivery_due ON subscription_delivery (due_at)"
        )
        await conn.execute(
            f"""CREATE TABLE IF NOT EXISTS subscription_event (
            seq {serial}, subscription TEXT NOT NULL, event_id TEXT NOT NULL,
            event {blob} NOT NULL, number BIGINT, state TEXT NOT NULL, matched TEXT NOT NULL,
            sent_at TEXT, UNIQUE (subscription, event_id))"""
        )
        await conn.execute(
            "CREATE INDEX IF NOT EXISTS subscription_event_pending"
            " ON subscription_event (subscription, state, seq)"
        )
        await conn.execute(
            "CREATE INDEX IF NOT EXISTS subscription_event_number"
            " ON subscription_event (subscription, number)"
        )
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS fanout_state (
            name TEXT PRIMARY KEY, watermark BIGINT NOT NULL, lease_owner TEXT,
            lease_until TEXT, stream TEXT)"""
        )


@dataclass(frozen=True)
class Delivery:
    """One subscription's row."""

    subscription: str
    owner: str
    owner_kind: str | None
    status: str
    resource: dict[str, Any]
    created: str
    events_since_start: int
    failures: int
    failing_since: str | None
    last_error: str | None
    due_at: str | None
    last_sent: str | None
    stored: bytes
    """The Subscription as stored in the row (`resource` parsed)."""


_DELIVERY_COLUMNS = (
    "subscription, owner, owner_kind, status, resource, created, events_since_start,"
    " failures, failing_since, last_error, due_at, last_sent"
)


def _delivery(row: Row) -> Delivery:
    stored = bytes(row[4])
    return Delivery(
        subscription=row[0],
        owner=row[1],
        owner_kind=row[2],
        status=row[3],
        resource=orjson.loads(stored),
        created=row[5],
        events_since_start=int(row[6]),
        failures=int(row[7]),
        failing_since=row[8],
        last_error=row[9],
        due_at=row[10],
        last_sent=row[11],
        stored=stored,
    )


@dataclass(frozen=True)
class QueuedEvent:
    seq: int
    event: bytes
    number: int | None
    state: str


_NUMBER = """WITH withheld AS (
    UPDATE subscription_event SET state = 'withheld' WHERE seq = ANY($1::BIGINT[])
), counted AS (
    UPDATE subscription_delivery SET events_since_start = events_since_start + $2
    WHERE subscription = $3 AND lease_owner = $4 AND $2 > 0
    RETURNING events_since_start
), numbered AS (
    UPDATE subscription_event AS e SET number = c.events_since_start - $2 + u.ord
    FROM counted AS c, unnest($5::BIGINT[]) WITH ORDINALITY AS u(seq, ord)
    WHERE e.seq = u.seq
)
SELECT events_since_start FROM counted"""
"""`number` on PostgreSQL in one round trip (its parameters numbered: some are used
twice): the withheld marked, the count raised if the worker holds the lease, and the
events numbered from it. Its one row is the count after numbering; none if the lease is
lost or there is nothing to number. (The parts touch different events, so one snapshot
for all of them is right.)"""

_DELIVERED_ROW = (
    "UPDATE subscription_delivery SET failures = 0, failing_since = NULL, last_error = NULL,"
    f" last_sent = ? WHERE subscription = ? RETURNING {_DELIVERY_COLUMNS}"
)
_DELIVERED = f"""WITH sent AS (
    UPDATE subscription_event SET state = 'sent', sent_at = ? WHERE seq = ANY(?::BIGINT[])
) {_DELIVERED_ROW}"""
"""`delivered` on PostgreSQL, one statement."""


_NEXT_BATCH = (
    f"SELECT {', '.join('d.' + c for c in _DELIVERY_COLUMNS.split(', '))},"
    " e.seq, e.event, e.number, e.state FROM subscription_delivery AS d"
    " LEFT JOIN subscription_event AS e ON e.seq IN (SELECT seq FROM subscription_event"
    " WHERE subscription = ? AND state = 'pending' ORDER BY seq LIMIT ?)"
    " WHERE d.subscription = ? ORDER BY e.seq"
)
"""`next_batch`: the row once per pending event (once, with no event, if none)."""


Matched = tuple[str, str, bytes]
"""(subscription, event id, event): an event matched to a subscription."""

_QUEUE_MATCHED = """WITH advanced AS (
    UPDATE fanout_state SET watermark = $1, lease_until = $2
    WHERE name = 'fanout' AND lease_owner = $3 AND watermark < $1
    RETURNING 1
), queued AS (
    INSERT INTO subscription_event (subscription, event_id, event, state, matched)
    SELECT m.subscription, m.event_id, m.event, 'pending', $4
    FROM unnest($5::TEXT[], $6::TEXT[], $7::BYTEA[]) WITH ORDINALITY
        AS m(subscription, event_id, event, n)
    WHERE EXISTS (SELECT 1 FROM advanced)
    ORDER BY m.n
    ON CONFLICT (subscription, event_id) DO NOTHING
), due AS (
    UPDATE subscription_delivery SET due_at = $4
    WHERE subscription = ANY($8::TEXT[]) AND failures = 0 AND (due_at IS NULL OR due_at > $4)
    AND EXISTS (SELECT 1 FROM advanced)
)
SELECT count(*) FROM advanced"""
"""`queue_matched` on PostgreSQL in one round trip: the watermark advanced if the worker
leads, and only then the events queued (in their order) and the subscriptions made due.
Its row counts the watermarks advanced: 1, or 0 when the lease is lost."""


def _numbered_from(since: int, unnumbered: list[int]) -> dict[int, int]:
    """The numbers of `unnumbered` (in order) that end at the count `since`."""
    first = since - len(unnumbered) + 1
    return {seq: first + i for i, seq in enumerate(unnumbered)}


class DeliveryQueue:
    """The queue's SQL. Its database is set when the service's runtime has opened it
    (`db`); the Subscription definition needs the queue before that."""

    def __init__(self) -> None:
        self._db: Database | None = None

    @property
    def db(self) -> Database:
        assert self._db is not None, "the delivery queue has no database yet"
        return self._db

    @db.setter
    def db(self, db: Database) -> None:
        self._db = db

    # -- the subscriptions themselves (written with the Subscription, in its transaction)

    async def sync(
        self,
        conn: Connection,
        subscription: str,
        owner: str,
        owner_kind: str | None,
        resource: dict[str, Any],
        *,
        restart: bool,
        resumed: bool = False,
    ) -> None:
        """Record a Subscription as written. `restart`: it was (re)activated by its owner,
        so it starts again with a handshake, now, with no failures counted. `resumed`: it
        was off, so only events raised from now on are its (`created` is when matching
        starts), however late the fan-out sees the ones raised while it was off."""
        body = orjson.dumps(resource)
        status = str(resource.get("status"))
        now = instant()
        found = await conn.fetchrow(
            "SELECT 1 FROM subscription_delivery WHERE subscription = ?", subscription
        )
        if found is None:
            await conn.execute(
                "INSERT INTO subscription_delivery (subscription, owner, owner_kind, status,"
                " resource, created, due_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                subscription,
                owner,
                owner_kind,
                status,
                body,
                now,
                now,
            )
        elif restart:
            await conn.execute(
                "UPDATE subscription_delivery SET status = ?, resource = ?, failures = 0,"
                " failing_since = NULL, last_error = NULL, due_at = ?,"
                " created = CASE WHEN ? THEN ? ELSE created END WHERE subscription = ?",
                status,
                body,
                now,
                resumed,
                now,
                subscription,
            )
        else:
            await conn.execute(
                "UPDATE subscription_delivery SET status = ?, resource = ? WHERE subscription = ?",
                status,
                body,
                subscription,
            )

    async def stop(self, conn: Connection, subscription: str) -> None:
        """A deleted Subscription takes no more events; what it had is pruned in time."""
        await conn.execute(
            "UPDATE subscription_delivery SET status = 'off', due_at = NULL WHERE subscription = ?",
            subscription,
        )

    async def by_status(self) -> dict[str, int]:
        """How many subscriptions there are of each status."""
        async with self.db.reader() as conn:
            rows = await conn.fetch(
                "SELECT status, COUNT(*) FROM subscription_delivery GROUP BY status"
            )
        counted = dict.fromkeys((*ACTIVE_STATUSES, "off"), 0)
        counted.update({str(status): int(number) for status, number in rows})
        return counted

    async def in_error(self, limit: int = 100) -> list[dict[str, str | None]]:
        """The subscriptions in `error` (longest failing first), for operators."""
        async with self.db.reader() as conn:
            rows = await conn.fetch(
                "SELECT subscription, owner, failing_since, last_error FROM subscription_delivery"
                " WHERE status = 'error' ORDER BY failing_since LIMIT ?",
                limit,
            )
        return [
            {"id": row[0], "owner": row[1], "failing_since": row[2], "error": row[3]}
            for row in rows
        ]

    async def load(self, conn: Connection, subscription: str) -> Delivery | None:
        row = await conn.fetchrow(
            f"SELECT {_DELIVERY_COLUMNS} FROM subscription_delivery WHERE subscription = ?",
            subscription,
        )
        return _delivery(row) if row is not None else None

    async def matching_candidates(self, conn: Connection) -> list[Delivery]:
        """Subscriptions that take events (everything but `off`)."""
        marks = ", ".join("?" * len(ACTIVE_STATUSES))
        rows = await conn.fetch(
            f"SELECT {_DELIVERY_COLUMNS} FROM subscription_delivery WHERE status IN ({marks})",
            *ACTIVE_STATUSES,
        )
        return [_delivery(row) for row in rows]

    # -- fan-out ------------------------------------------------------------------------

    async def lead_fanout(self, worker: str, lease_seconds: float, start_at: int) -> int | None:
        """Take or keep the fan-out lease; the stream sequence handled last (`start_at` - 1
        the first time ever), or None while another live instance leads."""
        now = instant()
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO fanout_state (name, watermark) VALUES ('fanout', ?)"
                " ON CONFLICT (name) DO NOTHING",
                start_at - 1,
            )
            changed = await conn.execute(
                "UPDATE fanout_state SET lease_owner = ?, lease_until = ? WHERE name = 'fanout'"
                " AND (lease_owner IS NULL OR lease_owner = ? OR lease_until < ?)",
                worker, later(lease_seconds), worker, now,
            )  # fmt: skip
            if changed != 1:
                return None
            row = await conn.fetchrow("SELECT watermark FROM fanout_state WHERE name = 'fanout'")
        return int(row[0]) if row else None

    async def advance(
        self, conn: Connection, worker: str, lease_seconds: float, watermark: int
    ) -> bool:
        """Record the last stream sequence handled, in the transaction that queued its
        events, if this worker still leads; False (roll back) if it does not."""
        changed = await conn.execute(
            "UPDATE fanout_state SET watermark = ?, lease_until = ?"
            " WHERE name = 'fanout' AND lease_owner = ? AND watermark < ?",
            watermark, later(lease_seconds), worker, watermark,
        )  # fmt: skip
        return changed == 1

    async def adopt_stream(self, worker: str, stream: str) -> bool:
        """Record which event stream the watermark counts in (its creation time). If it is
        another one than recorded (the stream was made anew and numbers from 1 again),
        start from its beginning: True. Only the leader changes anything."""
        async with self.db.transaction() as conn:
            row = await conn.fetchrow(
                "SELECT stream FROM fanout_state WHERE name = 'fanout' AND lease_owner = ?",
                worker,
            )
            if row is None or row[0] == stream:
                return False
            anew = row[0] is not None
            await conn.execute(
                "UPDATE fanout_state SET stream = ?,"
                " watermark = CASE WHEN ? THEN 0 ELSE watermark END WHERE name = 'fanout'",
                stream,
                anew,
            )
        return anew

    async def resign_fanout(self, worker: str) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE fanout_state SET lease_owner = NULL, lease_until = NULL"
                " WHERE name = 'fanout' AND lease_owner = ?",
                worker,
            )

    async def queue_matched(
        self, worker: str, lease_seconds: float, watermark: int, matched: list[Matched]
    ) -> bool:
        """Queue (subscription, event id, event) rows, each once however often the event
        is handed over, make the subscriptions that are not backing off due now, and
        record `watermark` as the last stream sequence handled: all or nothing, and only
        if `worker` still leads the fan-out (False, nothing written, if it does not).
        On PostgreSQL one statement, on SQLite a transaction."""
        now = instant()
        if self.db.dialect == "postgresql":
            async with self.db.single() as conn:
                row = await conn.fetchrow(
                    _QUEUE_MATCHED,
                    watermark,
                    later(lease_seconds),
                    worker,
                    now,
                    [sub for sub, _, _ in matched],
                    [event_id for _, event_id, _ in matched],
                    [body for _, _, body in matched],
                    sorted({sub for sub, _, _ in matched}),
                )
            return row is not None and int(row[0]) == 1
        async with self.db.transaction() as conn:
            if not await self.advance(conn, worker, lease_seconds, watermark):
                return False
            await conn.executemany(
                "INSERT INTO subscription_event (subscription, event_id, event, state, matched)"
                " VALUES (?, ?, ?, 'pending', ?) ON CONFLICT (subscription, event_id) DO NOTHING",
                [(sub, event_id, body, now) for sub, event_id, body in matched],
            )
            for sub in sorted({sub for sub, _, _ in matched}):
                await conn.execute(
                    "UPDATE subscription_delivery SET due_at = ? WHERE subscription = ?"
                    " AND failures = 0 AND (due_at IS NULL OR due_at > ?)",
                    now,
                    sub,
                    now,
                )
        return True

    # -- delivery -----------------------------------------------------------------------

    async def due(self, limit: int) -> list[str]:
        """Subscriptions no one is delivering that are due: an attempt, handshake or
        heartbeat has fallen due, or a handshake or events wait and no failure is being
        backed off.
        (Waiting events need no mark: a mark can be overwritten by a delivery that ends
        at the moment new events are queued.)"""
        now = instant()
        marks = ", ".join("?" * len(ACTIVE_STATUSES))
        async with self.db.reader() as conn:
            rows = await conn.fetch(
                "SELECT subscription FROM subscription_delivery AS d"
                f" WHERE status IN ({marks}) AND (lease_until IS NULL OR lease_until < ?)"
                " AND ((due_at IS NOT NULL AND due_at <= ?) OR (failures = 0 AND"
                " (status = 'requested' OR EXISTS (SELECT 1 FROM subscription_event AS e"
                " WHERE e.subscription = d.subscription AND e.state = 'pending'))))"
                " ORDER BY due_at LIMIT ?",
                *ACTIVE_STATUSES,
                now,
                now,
                limit,
            )
        return [str(row[0]) for row in rows]

    async def claim(self, subscription: str, worker: str, lease_seconds: float) -> Delivery | None:
        """Take the subscription's lease unless another live worker holds it; the row as
        it is when taken, or None."""
        now = instant()
        async with self.db.single() as conn:
            row = await conn.fetchrow(
                "UPDATE subscription_delivery SET lease_owner = ?, lease_until = ?"
                " WHERE subscription = ? AND (lease_until IS NULL OR lease_until < ?)"
                f" RETURNING {_DELIVERY_COLUMNS}",
                worker,
                later(lease_seconds),
                subscription,
                now,
            )
        return _delivery(row) if row is not None else None

    async def extend(self, subscription: str, worker: str, lease_seconds: float) -> bool:
        """Keep the lease while delivering; False if it was lost (taken over)."""
        async with self.db.single() as conn:
            changed = await conn.execute(
                "UPDATE subscription_delivery SET lease_until = ?"
                " WHERE subscription = ? AND lease_owner = ?",
                later(lease_seconds),
                subscription,
                worker,
            )
        return changed == 1

    async def release(self, subscription: str, worker: str, due_at: str | None) -> None:
        async with self.db.single() as conn:
            await conn.execute(
                "UPDATE subscription_delivery SET lease_owner = NULL, lease_until = NULL,"
                " due_at = CASE WHEN failures = 0 AND (status = 'requested' OR EXISTS"
                " (SELECT 1 FROM subscription_event"
                " WHERE subscription_event.subscription = subscription_delivery.subscription"
                " AND state = 'pending')) THEN ? ELSE ? END"
                " WHERE subscription = ? AND lease_owner = ?",
                instant(),
                due_at,
                subscription,
                worker,
            )

    async def next_batch(
        self, subscription: str, limit: int
    ) -> tuple[Delivery, list[QueuedEvent]] | None:
        """The subscription's row as it is now and its first `limit` pending events, in
        one round trip: a delivery sees a partner's change (`off`, a new endpoint) before
        its next batch. None if the row is gone."""
        async with self.db.reader() as conn:
            rows = await conn.fetch(_NEXT_BATCH, subscription, limit, subscription)
        if not rows:
            return None
        events = [
            QueuedEvent(int(r[-4]), bytes(r[-3]), r[-2], str(r[-1]))
            for r in rows
            if r[-4] is not None
        ]
        return _delivery(rows[0]), events

    async def number(
        self, subscription: str, worker: str, withheld: list[int], unnumbered: list[int]
    ) -> dict[int, int] | None:
        """Withhold some queued events and give the others their numbers (in order); None
        (the events stay unnumbered) if `worker` no longer holds the subscription's lease. Only the
        holder numbers, and the numbers are stored before anything is sent, so an event is
        numbered once even when a lease changes hands in the middle of a turn."""
        if self.db.dialect == "postgresql":
            async with self.db.single() as conn:
                row = await conn.fetchrow(
                    _NUMBER, withheld, len(unnumbered), subscription, worker, unnumbered
                )
            since = row[0] if row is not None else None
        else:
            async with self.db.transaction() as conn:
                since = await self._number_in_statements(
                    conn, subscription, worker, withheld, unnumbered
                )
        if not unnumbered:
            return {}
        if since is None:
            return None
        return _numbered_from(int(since), unnumbered)

    async def _number_in_statements(
        self,
        conn: Connection,
        subscription: str,
        worker: str,
        withheld: list[int],
        unnumbered: list[int],
    ) -> int | None:
        """`number` as SQLite takes it: the count after numbering, or None."""
        if withheld:
            marks = ", ".join("?" * len(withheld))
            await conn.execute(
                f"UPDATE subscription_event SET state = 'withheld' WHERE seq IN ({marks})",
                *withheld,
            )
        if not unnumbered:
            return None
        row = await conn.fetchrow(
            "UPDATE subscription_delivery SET events_since_start = events_since_start + ?"
            " WHERE subscription = ? AND lease_owner = ? RETURNING events_since_start",
            len(unnumbered),
            subscription,
            worker,
        )
        if row is None:
            return None
        numbers = _numbered_from(int(row[0]), unnumbered)
        await conn.executemany(
            "UPDATE subscription_event SET number = ? WHERE seq = ?",
            [(number, seq) for seq, number in numbers.items()],
        )
        return int(row[0])

    async def delivered(self, subscription: str, seqs: list[int]) -> Delivery | None:
        """Mark events sent and the subscription as not failing; its row as it is now."""
        now = instant()
        if self.db.dialect == "postgresql":
            async with self.db.single() as conn:
                row = await conn.fetchrow(_DELIVERED, now, seqs, now, subscription)
            return _delivery(row) if row is not None else None
        async with self.db.transaction() as conn:
            if seqs:
                marks = ", ".join("?" * len(seqs))
                await conn.execute(
                    f"UPDATE subscription_event SET state = 'sent', sent_at = ?"
                    f" WHERE seq IN ({marks})",
                    now,
                    *seqs,
                )
            row = await conn.fetchrow(_DELIVERED_ROW, now, subscription)
        return _delivery(row) if row is not None else None

    async def failed(self, subscription: str, reason: str, retry_in: float) -> Delivery | None:
        """Count a failure and when to try again; the row as it is now."""
        now = instant()
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE subscription_delivery SET failures = failures + 1,"
                " failing_since = COALESCE(failing_since, ?), last_error = ?, due_at = ?"
                " WHERE subscription = ?",
                now,
                reason[:500],
                later(retry_in),
                subscription,
            )
            return await self.load(conn, subscription)

    async def numbered(self, subscription: str, first: int, last: int) -> list[tuple[int, bytes]]:
        """Numbered events in [first, last] that were not withheld, for `$events`."""
        async with self.db.reader() as conn:
            rows = await conn.fetch(
                "SELECT number, event FROM subscription_event WHERE subscription = ?"
                " AND number BETWEEN ? AND ? AND state <> 'withheld' ORDER BY number",
                subscription,
                first,
                last,
            )
        return [(int(r[0]), bytes(r[1])) for r in rows]

    async def prune(self, retention_seconds: float) -> int:
        """Forget events delivered (or withheld) longer ago than the retention period: a
        partner can replay with `$events` for that long. Events waiting for a subscription
        that is on are kept; those of one that is off (or deleted) go after as long."""
        cutoff = instant(datetime.now(UTC) - timedelta(seconds=retention_seconds))
        async with self.db.transaction() as conn:
            return await conn.execute(
                "DELETE FROM subscription_event WHERE (state = 'sent' AND sent_at < ?)"
                " OR (state = 'withheld' AND matched < ?)"
                " OR (state = 'pending' AND matched < ? AND subscription IN"
                " (SELECT subscription FROM subscription_delivery WHERE status = 'off'))",
                cutoff,
                cutoff,
                cutoff,
            )

    async def backlog(self, subscription: str) -> int:
        """Events numbered (so decided for the partner) and not yet delivered. Events not
        yet decided are not counted: their number would tell of events about patients the
        partner may have no basis to know of."""
        async with self.db.reader() as conn:
            row = await conn.fetchrow(
                "SELECT COUNT(*) FROM subscription_event WHERE subscription = ?"
                " AND state = 'pending' AND number IS NOT NULL",
                subscription,
            )
        return int(row[0]) if row else 0
