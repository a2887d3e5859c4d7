"""A pooled PostgreSQL connection as the store uses it, in or outside a transaction.

In a transaction, a statement whose outcome nobody reads (`execute_later`) waits until the
next statement or the commit and goes with it, a run of them as one pipelined batch. And
a statement that failed marks the transaction failed, so that a caller who went on after
the failure never hears it committed: PostgreSQL has aborted it, and COMMIT only rolls it
back.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from shared.store.statements import Dialect, Row, numbered, traced


class PgConnection:
    """A pooled connection. In a transaction (`deferring`), statements given to
    `execute_later` wait in order until the next statement or the commit, and are sent
    before it, consecutive ones of the same text as one pipelined batch: nothing runs on
    the connection before them, so every later statement, lock and read sees them, and a
    failure among them aborts the transaction as it would have at once."""

    dialect: Dialect = "postgresql"

    def __init__(
        self, conn: asyncpg.Connection[Any] | PoolConnectionProxy[Any], *, deferring: bool = False
    ) -> None:
        self._conn = conn
        self.outbox_written = False
        self.awaited_messages: list[int] = []
        self._deferring = deferring
        self._deferred: list[tuple[str, tuple[Any, ...]]] = []
        self.failed = False
        """A statement failed: PostgreSQL has aborted the transaction, and a COMMIT would
        only roll it back, so it is never reported as committed."""

    @contextlib.contextmanager
    def _sent(self, sql: str) -> Iterator[None]:
        """A statement's span; a failure marks the transaction failed (`failed`)."""
        try:
            with traced(self.dialect, sql):
                yield
        except asyncpg.PostgresError:
            self.failed = True
            raise

    async def execute_later(self, sql: str, *args: Any) -> None:
        if not self._deferring:
            await self.execute(sql, *args)
            return
        self._deferred.append((sql, args))

    async def send_deferred(self) -> None:
        pending, self._deferred = self._deferred, []
        for sql, batch in itertools.groupby(pending, key=lambda statement: statement[0]):
            with self._sent(sql):
                await self._conn.executemany(numbered(sql), [args for _, args in batch])

    async def execute(self, sql: str, *args: Any) -> int:
        if self._deferred:
            await self.send_deferred()
        with self._sent(sql):
            status = await self._conn.execute(numbered(sql), *args)
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if self._deferred:
            await self.send_deferred()
        if rows:
            with self._sent(sql):
                await self._conn.executemany(numbered(sql), rows)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        if self._deferred:
            await self.send_deferred()
        with self._sent(sql):
            return list(await self._conn.fetch(numbered(sql), *args))

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        if self._deferred:
            await self.send_deferred()
        with self._sent(sql):
            row = await self._conn.fetchrow(numbered(sql), *args)
        return row
