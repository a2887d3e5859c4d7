"""First versions in a PostgreSQL transaction go to the database together.

A first version that claims no unique key has nothing to conflict with, so its
`store_version` call waits for the transaction's next statement or its commit
(`Connection.execute_later`) and a run of them is one pipelined batch. What must hold:
the next statement of the transaction sees them, the commit stores them, a failure
among them fails the transaction and stores none of it, and a version that could
conflict is still stored, and answered, at once. The transaction begins with its first
statement sent; one that sent none and has one batch waiting sends it alone (PostgreSQL runs
it as one implicit transaction), and one that has nothing waiting sends nothing.

A version that could conflict waits too when its caller asks (`at_commit`): its conflict is
then raised by the statement that carries it, the next one or the commit, as the
`VersionConflict` it is, with nothing of the transaction stored.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from services.directory.resources import RelatedPersonDefinition
from shared.codes import PERSON_CATEGORY
from shared.fhir.errors import FhirError
from shared.store.access_sql import ResourceAccess
from shared.store.database import Database
from shared.store.failures import VersionConflict
from shared.store.outbox import add_message
from shared.store.resource_store import DuplicateKey, ResourceStore, StoredResource, refusal
from shared.store.schema import create_schema
from tests.support import schema_database, sent_statements

pytestmark = pytest.mark.services

STORE = ResourceStore(
    {"RelatedPerson": RelatedPersonDefinition(enforce_orgnr_check_digit=False).params_by_name()}
)


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    async with schema_database("t_deferred") as pg:
        await create_schema(pg)
        yield pg


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    return sent_statements(monkeypatch)


def parent(res_id: str, fnr: str | None = None) -> tuple[StoredResource, dict[str, Any]]:
    resource: dict[str, Any] = {
        "resourceType": "RelatedPerson",
        "patient": {"reference": "Patient/child"},
        "name": [{"family": "Nordmann", "given": [res_id]}],
    }
    access = ResourceAccess(patient="child", category=PERSON_CATEGORY, author="974760673")
    stored = STORE.next_version(
        resource, res_type="RelatedPerson", res_id=res_id, previous=None, access=access
    )
    return stored, resource


async def stored_ids(db: Database) -> list[str]:
    async with db.reader() as conn:
        rows = await conn.fetch("SELECT res_id FROM resources ORDER BY res_id")
    return [str(row[0]) for row in rows]


async def test_a_run_of_first_versions_is_one_batch_that_the_next_statement_sees(
    db: Database, calls: list[tuple[str, int]]
) -> None:
    async with db.transaction() as conn:
        calls.clear()
        for n in range(3):
            stored, resource = parent(f"p{n}")
            await STORE.write(conn, stored, resource, previous=None)
        assert calls == []  # nothing sent yet
        seen = await conn.fetch("SELECT res_id FROM resources ORDER BY res_id")
        assert [str(row[0]) for row in seen] == ["p0", "p1", "p2"]
        assert calls == [
            ("execute BEGIN;", 1),  # the transaction begins with its first statement sent
            ("executemany SELECT store_version_raising", 3),
            ("fetch SELECT res_id FROM resources ORDER BY res_id", 1),
        ]
    assert await stored_ids(db) == ["p0", "p1", "p2"]


async def test_the_commit_sends_what_is_left(db: Database, calls: list[tuple[str, int]]) -> None:
    async with db.transaction() as conn:
        calls.clear()
        for n in range(2):
            stored, resource = parent(f"p{n}")
            await STORE.write(conn, stored, resource, previous=None)
    # one batch and nothing before it: the batch is the transaction, no BEGIN or COMMIT
    assert calls == [("executemany SELECT store_version_raising", 2)]
    assert await stored_ids(db) == ["p0", "p1"]


async def test_batches_of_several_statements_go_in_a_transaction_begun_for_them(
    db: Database, calls: list[tuple[str, int]]
) -> None:
    async with db.transaction() as conn:
        calls.clear()
        stored, resource = parent("p0")
        await STORE.write(conn, stored, resource, previous=None)
        await add_message(conn, "m1", "t.event.x", b"{}", None)
    assert calls == [
        ("execute BEGIN;", 1),
        ("executemany SELECT store_version_raising", 1),
        ("executemany INSERT INTO outbox ", 1),
        ("execute COMMIT;", 1),
    ]
    assert await stored_ids(db) == ["p0"]
    async with db.reader() as reader:
        assert await reader.fetch("SELECT event_id FROM outbox WHERE event_id = 'm1'")


async def test_a_transaction_that_sends_nothing_takes_no_connection(
    db: Database, calls: list[tuple[str, int]]
) -> None:
    async with db.transaction() as conn:
        calls.clear()
    assert calls == []
    assert not conn.opened


async def test_a_failure_among_them_stores_nothing_of_the_transaction(db: Database) -> None:
    async with db.transaction() as conn:
        stored, resource = parent("taken")
        await STORE.write(conn, stored, resource, previous=None)
    with pytest.raises(asyncpg.UniqueViolationError):
        async with db.transaction() as conn:
            for res_id in ("first", "taken", "last"):
                stored, resource = parent(res_id)
                await STORE.write(conn, stored, resource, previous=None)
    assert await stored_ids(db) == ["taken"]


async def test_a_version_that_claims_a_key_is_stored_and_answered_at_once(
    db: Database, calls: list[tuple[str, int]]
) -> None:
    key = [("fnr", "15076500565")]
    async with db.transaction() as conn:
        stored, resource = parent("holder")
        await STORE.write(conn, stored, resource, previous=None, unique_keys=key)
    with pytest.raises(DuplicateKey):
        async with db.transaction() as conn:
            calls.clear()
            stored, resource = parent("second")
            await STORE.write(conn, stored, resource, previous=None)
            stored, resource = parent("claimant")
            await STORE.write(conn, stored, resource, previous=None, unique_keys=key)
    assert calls[:3] == [
        ("execute BEGIN;", 1),
        ("executemany SELECT store_version_raising", 1),
        ("execute SELECT store_version_raising", 1),
    ]
    assert await stored_ids(db) == ["holder"]


async def test_a_transaction_whose_statement_failed_is_never_reported_committed(
    db: Database,
) -> None:
    """PostgreSQL aborts a transaction at its first failed statement, and COMMIT then only
    rolls it back: a caller that swallowed the failure must not hear it committed."""
    with pytest.raises(RuntimeError, match="rolled back"):
        async with db.transaction() as conn:
            stored, resource = parent("kept-in-vain")
            await STORE.write(conn, stored, resource, previous=None)
            with contextlib.suppress(asyncpg.PostgresError):
                await conn.execute("SELECT 1 / 0")
    assert await stored_ids(db) == []


KEY = [("fnr", "15076500565")]


async def test_a_create_that_claims_a_key_at_commit_is_the_transaction_alone(
    db: Database, calls: list[tuple[str, int]]
) -> None:
    async with db.transaction() as conn:
        calls.clear()
        stored, resource = parent("holder")
        await STORE.write(conn, stored, resource, previous=None, unique_keys=KEY, at_commit=True)
        assert calls == []
    assert calls == [("executemany SELECT store_version_raising", 1)]
    assert await stored_ids(db) == ["holder"]


async def test_a_key_held_elsewhere_is_raised_by_the_commit(
    db: Database, calls: list[tuple[str, int]]
) -> None:
    async with db.transaction() as conn:
        stored, resource = parent("holder")
        await STORE.write(conn, stored, resource, previous=None, unique_keys=KEY)
    with pytest.raises(VersionConflict) as raised:
        async with db.transaction() as conn:
            calls.clear()
            stored, resource = parent("claimant")
            await STORE.write(
                conn, stored, resource, previous=None, unique_keys=KEY, at_commit=True
            )
    conflict = raised.value
    assert (conflict.reason, conflict.res_type, conflict.res_id) == (
        "duplicate",
        "RelatedPerson",
        "claimant",
    )
    assert (conflict.created, conflict.key, conflict.holder) == (
        True,
        ("fnr", "15076500565"),
        ("RelatedPerson", "holder"),
    )
    assert calls == [("executemany SELECT store_version_raising", 1)]
    assert await stored_ids(db) == ["holder"]
    answer = refusal(conflict, name_holder=False)
    assert isinstance(answer, DuplicateKey) and answer.holder == ("RelatedPerson", "holder")
    assert "another resource" in answer.issues[0].diagnostics
    named = refusal(conflict, name_holder=True)
    assert "RelatedPerson/holder" in named.issues[0].diagnostics


async def test_a_conflict_at_commit_is_raised_by_the_next_statement_when_one_comes_first(
    db: Database,
) -> None:
    async with db.transaction() as conn:
        stored, resource = parent("holder")
        await STORE.write(conn, stored, resource, previous=None, unique_keys=KEY)
    with pytest.raises(RuntimeError, match="rolled back"):  # the caller went on
        async with db.transaction() as conn:
            first, body = parent("first")
            await STORE.write(conn, first, body, previous=None)
            stored, resource = parent("claimant")
            await STORE.write(
                conn, stored, resource, previous=None, unique_keys=KEY, at_commit=True
            )
            with pytest.raises(VersionConflict) as raised:
                await conn.fetch("SELECT 1")
            assert (raised.value.res_id, raised.value.holder) == (
                "claimant",
                ("RelatedPerson", "holder"),
            )
    assert await stored_ids(db) == ["holder"]


async def test_a_version_that_came_second_is_raised_as_changed(db: Database) -> None:
    async with db.transaction() as conn:
        first, resource = parent("p")
        await STORE.write(conn, first, resource, previous=None)
    async with db.transaction() as conn:
        second, resource = parent("p")
        second = STORE.next_version(
            resource, res_type="RelatedPerson", res_id="p", previous=first, access=first.access
        )
        await STORE.write(conn, second, resource, previous=first)
    stale = STORE.next_version(
        resource, res_type="RelatedPerson", res_id="p", previous=first, access=first.access
    )
    for at_commit in (False, True):
        with pytest.raises((VersionConflict, FhirError)) as raised:
            async with db.transaction() as conn:
                await STORE.write(conn, stale, resource, previous=first, at_commit=at_commit)
        if at_commit:
            assert isinstance(raised.value, VersionConflict)
            assert (raised.value.reason, raised.value.created) == ("changed", False)
        else:
            assert isinstance(raised.value, FhirError) and raised.value.status == 409
            assert "changed concurrently" in raised.value.issues[0].diagnostics
    async with db.reader() as reader:
        row = await reader.fetchrow("SELECT version FROM resources WHERE res_id = 'p'")
    assert row is not None and row[0] == 2


async def test_a_batch_of_new_versions_alone_is_the_transaction(
    db: Database, calls: list[tuple[str, int]]
) -> None:
    """The audit trail's batch: many first versions, nothing else sent."""
    async with db.transaction() as conn:
        calls.clear()
        batch = [parent(f"a{n}") for n in range(3)]
        await STORE.write_new(conn, [(stored, resource, []) for stored, resource in batch])
        assert calls == []
    assert calls == [("executemany SELECT store_version_raising", 3)]
    assert await stored_ids(db) == ["a0", "a1", "a2"]
