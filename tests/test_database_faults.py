"""A database that drops connections or refuses them is answered honestly.

Each test makes its own PostgreSQL database (so refusing connections to it touches no
other test), and drives the service's database layer the way every request does:
connections the database terminated are replaced before anything is written, and a
database that refuses connections is a 503 with Retry-After, never a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import asyncpg
import pytest

from shared.fhir.errors import FhirError
from shared.store.database import PostgresDatabase, SqliteDatabase
from tests.support import postgres_url

pytestmark = pytest.mark.services


async def as_admin(admin: str, sql: str, *args: object) -> str:
    """One statement on the admin database; its status text."""
    conn = await asyncpg.connect(admin)
    try:
        return await conn.execute(sql, *args)
    finally:
        await conn.close()


@pytest.fixture
async def own_database() -> AsyncIterator[tuple[str, str]]:
    """(the admin URL, the URL of a database made for this test)."""
    admin = postgres_url()
    name = f"bb_faults_{uuid.uuid4().hex[:10]}"
    await as_admin(admin, f"CREATE DATABASE {name}")
    url = urlunparse(urlparse(admin)._replace(path=f"/{name}"))
    try:
        yield admin, url
    finally:
        await as_admin(admin, f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
        await terminate(admin, url)
        await as_admin(admin, f"DROP DATABASE IF EXISTS {name}")


async def terminate(admin: str, url: str) -> int:
    """Terminate every backend of the test's database; how many there were."""
    status = await as_admin(
        admin,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = $1 AND pid <> pg_backend_pid()",
        urlparse(url).path.lstrip("/"),
    )
    return int(status.split()[-1])  # "SELECT <rows>"


@contextlib.asynccontextmanager
async def with_notes(url: str, pool_size: int) -> AsyncIterator[PostgresDatabase]:
    """The service's database layer on the test's database, with a table `notes`."""
    db = await PostgresDatabase.connect(url, "faults", pool_size=pool_size)
    try:
        async with db.transaction() as conn:
            await conn.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY)")
        yield db
    finally:
        await db.close()


async def test_terminated_connections_are_replaced_before_anything_is_written(
    own_database: tuple[str, str],
) -> None:
    admin, url = own_database
    async with with_notes(url, pool_size=4) as db:

        async def busy() -> None:
            async with db.reader() as conn:
                await conn.execute("SELECT pg_sleep(0.2)")

        await asyncio.gather(busy(), busy(), busy(), busy())  # four pooled connections
        assert await terminate(admin, url) >= 4, "the pool held its connections"
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO notes (id) VALUES (1)")
        async with db.reader() as conn:
            assert await conn.fetch("SELECT id FROM notes") == [(1,)]


async def test_a_database_that_refuses_connections_is_a_503_with_retry_after(
    own_database: tuple[str, str],
) -> None:
    admin, url = own_database
    db = await PostgresDatabase.connect(url, "faults", pool_size=2)
    try:
        name = urlparse(url).path.lstrip("/")
        await as_admin(admin, f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        await terminate(admin, url)
        for opening in (db.transaction, db.reader, db.single):
            with pytest.raises(FhirError) as caught:
                async with opening() as open_conn:
                    await open_conn.execute("SELECT 1")
            assert caught.value.status == 503
            assert caught.value.headers["Retry-After"] == "2"
            assert caught.value.issues[0].code == "transient"
    finally:
        await db.close()


async def test_a_statement_that_loses_its_connection_is_an_unknown_outcome(
    own_database: tuple[str, str],
) -> None:
    """A statement on `single` commits by itself: lost while it runs, it may or may not
    have been stored, which the answer says (504), rather than that nothing was (503)."""
    admin, url = own_database
    async with with_notes(url, pool_size=2) as db:

        async def write() -> None:
            async with db.single() as conn:
                await conn.execute(
                    "INSERT INTO notes (id) SELECT 1 FROM (SELECT pg_sleep(5)) AS slow"
                )

        writing = asyncio.create_task(write())
        for _ in range(100):
            await asyncio.sleep(0.05)
            status = await as_admin(
                admin,
                "SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND query LIKE '%pg_sleep(5)%'"
                " AND pid <> pg_backend_pid()",
                urlparse(url).path.lstrip("/"),
            )
            if status != "SELECT 0":
                break
        assert await terminate(admin, url) >= 1
        with pytest.raises(FhirError) as caught:
            await writing
        assert caught.value.status == 504


@pytest.mark.parametrize("moment", ["begin", "body", "commit"])
async def test_a_cancelled_sqlite_writer_leaves_no_transaction_open(
    tmp_path: Path, moment: str
) -> None:
    """SQLite runs each statement on its own thread to the end even when the caller is
    cancelled while it waits; the next writer still gets a transaction of its own."""
    db = await SqliteDatabase.connect(tmp_path / "cancelled.sqlite")
    try:
        async with db.transaction() as conn:
            await conn.execute("CREATE TABLE t (n INTEGER)")
        entered = asyncio.Event()

        async def writer() -> None:
            async with db.transaction() as conn:
                await conn.execute("INSERT INTO t VALUES (1)")
                if moment == "body":
                    entered.set()
                    await asyncio.sleep(60)

        task = asyncio.create_task(writer())
        if moment == "body":
            await entered.wait()
        else:  # the task waits on BEGIN after its first step, on COMMIT after a few
            for _ in range(1 if moment == "begin" else 4):
                await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO t VALUES (2)")
        async with db.reader() as conn:
            rows = [row[0] for row in await conn.fetch("SELECT n FROM t ORDER BY n")]
        assert rows[-1] == 2 and rows in ([2], [1, 2])
    finally:
        await db.close()
