"""A pooled PostgreSQL connection as the store uses it, in or outside a transaction.

In a transaction, a statement whose outcome nobody reads (`execute_later`) waits until the
next statement or the commit and goes with it, a run of them as one pipelined batch. The
transaction itself begins with its first statement sent, not before: one whose statements
all waited, and are one batch (the AuditEvents of an audit batch, a message for the
outbox), is sent as that batch alone, which PostgreSQL runs as one implicit transaction:
one round trip instead of BEGIN, the batch and COMMIT. And a statement that failed marks
the transaction failed, so that a caller who went on after the failure never hears it
committed: PostgreSQL has aborted it, and COMMIT only rolls it back.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from asyncpg.transaction import Transaction

from shared.store.failures import VersionConflict, conflicts_raised
from shared.store.statements import Dialect, Row, numbered, traced

Pooled: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"
Opener: TypeAlias = Callable[[], Awaitable[tuple[Pooled, "Transaction | None"]]]
"""Acquires a pooled connection, with the transaction begun on it when there is one."""


class PgConnection:
    """A pooled connection. In a transaction (`deferring`), statements given to
    `execute_later` wait in order until the next statement or the commit, and are sent
    before it, consecutive ones of the same text as one pipelined batch: nothing runs on
    the connection before them, so every later statement, lock and read sees them, and a
    failure among them aborts the transaction as it would have at once.

    Given an `opener` instead of a connection, it acquires its connection and begins its
    transaction when the first statement is sent (`opened`); until then it holds none."""

    dialect: Dialect = "postgresql"

    def __init__(
        self,
        conn: Pooled | None = None,
        *,
        deferring: bool = False,
        opener: Opener | None = None,
    ) -> None:
        assert (conn is None) != (opener is None)
        self._conn = conn
        self._opener = opener
        self.transaction: Transaction | None = None
        self.outbox_written = False
        self.awaited_messages: list[int] = []
        self._deferring = deferring
        self._deferred: list[tuple[str, tuple[Any, ...]]] = []
        self.failed = False
        """A statement failed: PostgreSQL has aborted the transaction, and a COMMIT would
        only roll it back, so it is never reported as committed."""

    @property
    def opened(self) -> bool:
        """It holds a connection (and its transaction, when it was given an opener)."""
        return self._conn is not None

    @property
    def pooled(self) -> Pooled | None:
        return self._conn

    def one_batch(self) -> tuple[str, list[tuple[Any, ...]]] | None:
        """What waits to be sent, when it is one batch (every statement of the same text)
        and nothing was sent before it: its text and its rows, taken from the waiting."""
        if self.opened or not self._deferred:
            return None
        texts = {sql for sql, _ in self._deferred}
        if len(texts) != 1:
            return None
        pending, self._deferred = self._deferred, []
        return pending[0][0], [args for _, args in pending]

    @property
    def waiting(self) -> bool:
        return bool(self._deferred)

    @contextlib.contextmanager
    def _sent(self, sql: str) -> Iterator[None]:
        """A statement's span; a failure marks the transaction failed (`failed`), and a
        version the database refused is raised as its conflict (`VersionConflict`)."""
        try:
            with traced(self.dialect, sql), conflicts_raised():
                yield
        except (asyncpg.PostgresError, VersionConflict):
            self.failed = True
            raise

    async def _ready(self) -> Pooled:
        """The connection, opened if it was not, with what waited sent on it."""
        if self._conn is None:
            assert self._opener is not None
            self._conn, self.transaction = await self._opener()
        if self._deferred:
            pending, self._deferred = self._deferred, []
            for sql, batch in itertools.groupby(pending, key=lambda statement: statement[0]):
                with self._sent(sql):
                    await self._conn.executemany(numbered(sql), [args for _, args in batch])
        return self._conn

    async def execute_later(self, sql: str, *args: Any) -> None:
        if not self._deferring:
            await self.execute(sql, *args)
            return
        self._deferred.append((sql, args))

    async def send_deferred(self) -> None:
        await self._ready()

    async def execute(self, sql: str, *args: Any) -> int:
        conn = await self._ready()
        with self._sent(sql):
            status = await conn.execute(numbered(sql), *args)
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            conn = await self._ready()
            with self._sent(sql):
                await conn.executemany(numbered(sql), rows)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        conn = await self._ready()
        with self._sent(sql):
            return list(await conn.fetch(numbered(sql), *args))

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        conn = await self._ready()
        with self._sent(sql):
            row = await conn.fetchrow(numbered(sql), *args)
        return row
