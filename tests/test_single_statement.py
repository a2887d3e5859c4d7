"""`Database.single`: a write that is one statement commits by itself, without BEGIN and
COMMIT round trips, on both backends; each statement on it stands alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.store.database import Database
from tests.support import BACKENDS, backend_database


@pytest.fixture(params=BACKENDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with backend_database(request.param, tmp_path, "single") as db:
        yield db


async def test_a_statement_commits_by_itself(database: Database) -> None:
    async with database.transaction() as conn:
        await conn.execute("CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT)")
        await conn.execute("INSERT INTO leases (name, holder) VALUES ('a', NULL)")
    async with database.single() as conn:
        taken = await conn.fetchrow(
            "UPDATE leases SET holder = ? WHERE name = ? AND holder IS NULL RETURNING name, holder",
            "me",
            "a",
        )
        assert taken is not None and tuple(taken) == ("a", "me")
        again = await conn.fetchrow(
            "UPDATE leases SET holder = ? WHERE name = ? AND holder IS NULL RETURNING name",
            "other",
            "a",
        )
        assert again is None
        with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
            await conn.execute("INSERT INTO leases (name, holder) VALUES ('a', 'x')")
    async with database.reader() as conn:
        rows = [tuple(row) for row in await conn.fetch("SELECT name, holder FROM leases")]
    assert rows == [("a", "me")], "the failed statement took nothing of the one before"
