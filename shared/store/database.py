"""One database interface over PostgreSQL (asyncpg) and SQLite (aiosqlite).

Services write SQL once, with `?` placeholders; this module owns connections and
transactions, and sends each statement as `shared.store.statements` adapts and traces it
(on PostgreSQL through `shared.store.pg_connection`). A set of strings of any
size is one parameter (`IN_TEXT_LIST`, `text_list`), so a statement's text and its number
of parameters do not grow with the set. PostgreSQL is the production database; SQLite is
the embedded default that needs no server. Its failures are answered as
`shared.store.failures` maps them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

import aiosqlite
import asyncpg

from shared.store.failures import (
    OUTAGE,
    REFUSED,
    conflicts_raised,
    contention,
    outcome_unknown,
    unavailable,
)
from shared.store.pg_connection import PgConnection
from shared.store.statements import IN_TEXT_LIST as IN_TEXT_LIST
from shared.store.statements import Dialect, numbered, traced
from shared.store.statements import Row as Row


class Connection(Protocol):
    """A connection inside a transaction (or a read-only snapshot)."""

    dialect: Dialect
    outbox_written: bool
    """Set by what puts a message in the outbox (`shared.store.outbox.add_message`, the
    version writes): the committer wakes the outbox relay only then."""
    awaited_messages: list[int]
    """Outbox rows of `add_message(before_answer=True)`: the answer waits for them."""

    @property
    def opened(self) -> bool:
        """It has sent a statement, or is in a transaction begun already (SQLite's
        `BEGIN IMMEDIATE`, a snapshot): a read elsewhere may not see what it sees."""
        ...

    @property
    def waiting(self) -> bool:
        """Statements wait to be sent (`execute_later`)."""
        ...

    async def execute(self, sql: str, *args: Any) -> int: ...

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...

    async def execute_later(self, sql: str, *args: Any) -> None:
        """A statement whose outcome nobody reads (it raises or succeeds): in a PostgreSQL
        transaction it is sent with the next statement or the commit, whichever comes
        first, so a run of them is one round trip (`PgConnection`); elsewhere at once."""
        ...


class Database(Protocol):
    dialect: Dialect

    def transaction(self) -> contextlib.AbstractAsyncContextManager[Connection]: ...

    def reader(self) -> contextlib.AbstractAsyncContextManager[Connection]: ...

    def single(self) -> contextlib.AbstractAsyncContextManager[Connection]:
        """A connection for one write statement that commits by itself: on PostgreSQL one
        round trip instead of three (BEGIN, the statement, COMMIT). Each statement on it
        is a transaction of its own, so it is for writes that are one statement."""
        ...

    async def close(self) -> None: ...


def text_list(values: Sequence[str]) -> str:
    """The parameter of an `IN_TEXT_LIST` condition (a JSON array of strings)."""
    return json.dumps(list(values))


async def _rollback_if_open(conn: asyncpg.Connection[Any]) -> None:
    """Pool reset without a round trip: no session state (SET, LISTEN, session locks) is
    ever used, so only a transaction left open by a cancelled task needs undoing."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


ACQUIRE_TIMEOUT = 10.0
"""Seconds a request waits for a pooled connection before it is answered 503."""


async def _release_broken(pool: asyncpg.Pool[Any], conn: Any) -> None:
    """Return a connection to the pool, whatever state the database left it in (a pool
    that cannot reset a connection closes it and opens another when one is wanted)."""
    with contextlib.suppress(Exception):
        await pool.release(conn)


class PostgresDatabase:
    """A connection pool whose connections work in the service's own schema."""

    dialect: Dialect = "postgresql"

    def __init__(self, pool: asyncpg.Pool[Any], schema: str) -> None:
        self._pool = pool
        self.schema = schema

    @classmethod
    async def connect(cls, url: str, schema: str, pool_size: int) -> PostgresDatabase:
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", schema):
            raise ValueError(f"Invalid PostgreSQL schema name {schema!r}")
        conn = await asyncpg.connect(url)
        try:
            with contextlib.suppress(asyncpg.UniqueViolationError):
                await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        finally:
            await conn.close()
        pool = await asyncpg.create_pool(
            url,
            min_size=1,
            max_size=pool_size,
            server_settings={"search_path": schema},
            reset=_rollback_if_open,
        )
        return cls(pool, schema)

    async def _begun(self, *, write: bool) -> tuple[Any, Any]:
        """A pooled connection (with its transaction begun, for a write). A connection the
        database dropped (a terminated backend, a restart) fails here, before anything
        is written: it is tried once more on a fresh one, then answered 503."""
        for attempt in (1, 2):
            try:
                conn = await self._pool.acquire(timeout=ACQUIRE_TIMEOUT)
            except REFUSED as exc:
                if attempt == 2:
                    raise unavailable(exc) from exc
                continue
            try:
                transaction = conn.transaction() if write else None
                if transaction is not None:
                    await transaction.start()
                return conn, transaction
            except BaseException as exc:
                # Whatever happened (a dropped connection, a cancelled request), the
                # connection goes back: a pool missing one never closes.
                await _release_broken(self._pool, conn)
                if not isinstance(exc, REFUSED):
                    raise
                # The others were likely dropped too (a restart): the retry gets a fresh
                # connection, not another stale one.
                with contextlib.suppress(Exception):
                    await self._pool.expire_connections()
                if attempt == 2:
                    raise unavailable(exc) from exc
        raise AssertionError("unreachable")

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A transaction, begun with its first statement sent (`PgConnection`). One that
        sent none commits what waited to be sent: nothing at all, one batch as a
        statement of its own (atomic: PostgreSQL runs a batch as one implicit
        transaction), or several in a transaction begun for them."""
        connection = PgConnection(deferring=True, opener=lambda: self._begun(write=True))
        try:
            try:
                yield connection
                if connection.failed:  # and the caller went on as if it had not
                    raise RuntimeError("a statement of the transaction failed; rolled back")
                batch = connection.one_batch()
                if batch is not None:
                    await self._commit_alone(*batch)
                    return
                if connection.waiting:
                    await connection.send_deferred()
            except BaseException:
                if connection.transaction is not None:
                    with contextlib.suppress(*OUTAGE):
                        await connection.transaction.rollback()
                raise
            if connection.transaction is not None:
                try:
                    await connection.transaction.commit()
                except OUTAGE as exc:
                    raise outcome_unknown(exc) from exc
        except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError) as exc:
            raise contention(exc) from exc
        except OUTAGE as exc:
            raise unavailable(exc) from exc  # lost before the commit: nothing was written
        finally:
            if connection.pooled is not None:
                await _release_broken(self._pool, connection.pooled)

    async def _commit_alone(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """One batch as a transaction of its own: it is the commit, so a connection lost
        while it runs leaves the outcome unknown."""
        conn, _ = await self._begun(write=False)
        try:
            with traced(self.dialect, sql), conflicts_raised():
                await conn.executemany(numbered(sql), rows)
        except OUTAGE as exc:
            raise outcome_unknown(exc) from exc
        finally:
            await _release_broken(self._pool, conn)

    @contextlib.asynccontextmanager
    async def reader(self) -> AsyncIterator[Connection]:
        conn, _ = await self._begun(write=False)
        try:
            yield PgConnection(conn)
        except OUTAGE as exc:
            raise unavailable(exc) from exc
        finally:
            await _release_broken(self._pool, conn)

    @contextlib.asynccontextmanager
    async def single(self) -> AsyncIterator[Connection]:
        conn, _ = await self._begun(write=False)
        try:
            yield PgConnection(conn)
        except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError) as exc:
            raise contention(exc) from exc
        except OUTAGE as exc:
            raise outcome_unknown(exc) from exc  # lost while the statement committed
        finally:
            await _release_broken(self._pool, conn)

    async def close(self) -> None:
        await self._pool.close()


class _SqliteConnection:
    dialect: Dialect = "sqlite"
    opened = True
    waiting = False

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self.outbox_written = False
        self.awaited_messages: list[int] = []

    async def execute(self, sql: str, *args: Any) -> int:
        with traced(self.dialect, sql):
            cursor = await self._conn.execute(sql, args)
            count = cursor.rowcount
            await cursor.close()
        return count

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            with traced(self.dialect, sql):
                await self._conn.executemany(sql, rows)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        with traced(self.dialect, sql):
            return list(await self._conn.execute_fetchall(sql, args))

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def execute_later(self, sql: str, *args: Any) -> None:
        await self.execute(sql, *args)  # in the process: no round trip to save


async def _rollback_if_open_sqlite(conn: aiosqlite.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):  # "no transaction is active"
        await conn.execute("ROLLBACK")


class SqliteDatabase:
    """One writer connection (SQLite allows one writer) and one reader (WAL snapshots)."""

    dialect: Dialect = "sqlite"

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()

    @classmethod
    async def connect(cls, path: Path) -> SqliteDatabase:
        path.parent.mkdir(parents=True, exist_ok=True)
        connections = []
        for _ in range(2):
            conn = await aiosqlite.connect(path, isolation_level=None)
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA synchronous=NORMAL")
            await conn.execute("PRAGMA busy_timeout=10000")
            connections.append(conn)
        return cls(*connections)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self._write_lock:
            try:
                try:
                    await self._writer.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as exc:  # another process holds the lock
                    raise contention(exc) from exc
                yield _SqliteConnection(self._writer)
                await self._writer.execute("COMMIT")
            except BaseException:
                # aiosqlite runs a statement to its end on its own thread even when the
                # caller was cancelled while waiting for it, a BEGIN or COMMIT among them.
                # The rollback is queued behind it, so the next holder of the lock finds
                # the writer outside any transaction.
                await asyncio.shield(_rollback_if_open_sqlite(self._writer))
                raise

    @contextlib.asynccontextmanager
    async def reader(self) -> AsyncIterator[Connection]:
        yield _SqliteConnection(self._reader)

    @contextlib.asynccontextmanager
    async def single(self) -> AsyncIterator[Connection]:
        async with self._write_lock:  # the writer in autocommit: each statement commits
            yield _SqliteConnection(self._writer)

    async def close(self) -> None:
        await self._writer.close()
        await self._reader.close()


async def open_database(url: str, schema: str, pool_size: int = 10) -> Database:
    """Open the database a URL names: postgresql://… or sqlite:///path."""
    parsed = urlparse(url)
    if parsed.scheme in ("postgres", "postgresql"):
        return await PostgresDatabase.connect(url, schema, pool_size)
    if parsed.scheme == "sqlite":
        return await SqliteDatabase.connect(Path(parsed.path))
    raise ValueError(f"Unsupported DATABASE_URL scheme {parsed.scheme!r}")
