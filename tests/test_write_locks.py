"""A write of patient data takes the patient's lock before the row's (`shared.store.write_locks`).

Against the real stack on PostgreSQL (SQLite has one writer and no row locks): another
writer of the same patient holds the patient's lock and then wants the row. A delete or
an update of the row, arriving in between, must wait for the patient without holding the
row; had it locked the row first, the two would wait for each other until PostgreSQL
broke the deadlock and one of them failed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shared.store.database import Connection
from shared.store.outbox import lock_patient
from tests.support import Reply, Stack
from tests.test_directory_api import FNR_2, create, patient, related_person, writer

WAITED = 10.0


async def _waiting_for(
    stack: Stack, conn: Connection, seconds: float = WAITED, *, waiters: int = 1
) -> None:
    """Return once `waiters` other backends wait for a lock this connection's transaction
    holds. Asked on a connection of its own: a transaction sees one snapshot of the
    activity."""
    own = await conn.fetchrow("SELECT pg_backend_pid()")
    assert own is not None and stack.directory.db is not None
    async with asyncio.timeout(seconds):
        while True:
            async with stack.directory.db.reader() as watcher:
                row = await watcher.fetchrow(
                    "SELECT count(*) FROM pg_stat_activity WHERE ? = ANY(pg_blocking_pids(pid))",
                    own[0],
                )
            if row is not None and row[0] >= waiters:
                return
            await asyncio.sleep(0.02)


async def _row_while_holding_the_patient(
    stack: Stack, child: str, parent: str, write: asyncio.Task[Reply]
) -> dict[str, Any]:
    """As another writer of the child: take the child's lock, let `write` come to wait
    for it, then lock the parent's row (which must be free) and commit."""
    assert stack.directory.db is not None
    async with stack.directory.db.transaction() as conn:
        await lock_patient(conn, child)
        await _waiting_for(stack, conn)
        await conn.execute("SET LOCAL lock_timeout = '3s'")
        row = await conn.fetchrow(
            "SELECT version, deleted FROM resources"
            " WHERE res_type = 'RelatedPerson' AND res_id = ? FOR UPDATE",
            parent,
        )
        assert row is not None
        assert not write.done()
        return {"version": row[0], "deleted": row[1]}


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_a_delete_waits_for_the_patient_before_it_locks_the_row(stack: Stack) -> None:
    child = await create(stack, patient())
    parent = await create(stack, related_person(child["id"]))
    token = writer(stack, "RelatedPerson")
    deleting = asyncio.create_task(
        stack.call("DELETE", f"RelatedPerson/{parent['id']}", token=token)
    )
    seen = await _row_while_holding_the_patient(stack, child["id"], parent["id"], deleting)
    assert seen == {"version": 1, "deleted": 0}
    reply = await deleting
    assert reply.status == 204, reply.body
    gone = await stack.call("GET", f"RelatedPerson/{parent['id']}", token=token)
    assert gone.status == 410, gone.body


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_an_update_waits_for_the_patient_before_it_locks_the_row(stack: Stack) -> None:
    child = await create(stack, patient())
    parent = await create(stack, related_person(child["id"]))
    token = writer(stack, "RelatedPerson")
    changed = {**parent, "name": [{"family": "Hansen", "given": ["Ola"]}]}
    updating = asyncio.create_task(
        stack.call("PUT", f"RelatedPerson/{parent['id']}", changed, token=token)
    )
    seen = await _row_while_holding_the_patient(stack, child["id"], parent["id"], updating)
    assert seen == {"version": 1, "deleted": 0}
    reply = await updating
    assert reply.status == 200, reply.body
    assert reply.json()["meta"]["versionId"] == "2"
    assert reply.json()["name"][0]["family"] == "Hansen"


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_a_parent_registered_while_the_child_is_deleted_is_refused(stack: Stack) -> None:
    """The deletion of a Patient refuses while parents are registered, and a parent needs a
    registered Patient. Both check under the child's lock: the deletion queued first wins,
    and the parent queued behind it finds the child gone (it must not be stored for a
    deleted child, whose access would then rest on a parent of no one)."""
    child = await create(stack, patient())
    assert stack.directory.db is not None
    async with stack.directory.db.transaction() as conn:
        await lock_patient(conn, child["id"])
        deleting = asyncio.create_task(
            stack.call("DELETE", f"Patient/{child['id']}", token=writer(stack, "Patient"))
        )
        await _waiting_for(stack, conn)
        registering = asyncio.create_task(
            stack.call(
                "POST",
                "RelatedPerson",
                related_person(child["id"]),
                token=writer(stack, "RelatedPerson"),
            )
        )
        await _waiting_for(stack, conn, waiters=2)
    deleted, registered = await deleting, await registering
    assert deleted.status == 204, deleted.body
    assert registered.status == 422, registered.body
    assert "registered Patient" in registered.json()["issue"][0]["diagnostics"]
    parents = await stack.call(
        "GET", f"RelatedPerson?patient=Patient/{child['id']}", token=writer(stack, "RelatedPerson")
    )
    assert parents.status == 200 and parents.json().get("total", 0) == 0, parents.body


def _renamed(child: dict[str, Any], family: str) -> dict[str, Any]:
    return {
        "resource": {**child, "name": [{"family": family, "given": ["Kari"]}]},
        "request": {"method": "PUT", "url": f"Patient/{child['id']}"},
    }


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_bundles_about_two_children_in_opposite_orders_do_not_deadlock(
    stack: Stack,
) -> None:
    """Each Bundle takes its children's locks up front in one order. Had each locked its
    first entry's child and then wanted the other's, the two would wait for each other
    once both children were free, until PostgreSQL failed one of them (503)."""
    first = await create(stack, patient())
    second = await create(stack, patient(FNR_2))
    token = writer(stack, "Patient")
    assert stack.directory.db is not None
    async with stack.directory.db.transaction() as conn:
        await lock_patient(conn, first["id"])
        await lock_patient(conn, second["id"])
        bundles = [
            {"resourceType": "Bundle", "type": "transaction", "entry": entries}
            for entries in (
                [_renamed(first, "A1"), _renamed(second, "B1")],
                [_renamed(second, "B2"), _renamed(first, "A2")],
            )
        ]
        sent = [asyncio.create_task(stack.call("POST", "", bundles[0], token=token))]
        await _waiting_for(stack, conn)
        sent.append(asyncio.create_task(stack.call("POST", "", bundles[1], token=token)))
        await _waiting_for(stack, conn, waiters=2)
    replies = await asyncio.gather(*sent)
    assert [reply.status for reply in replies] == [200, 200], [r.body for r in replies]
    for child in (first, second):
        current = await stack.call("GET", f"Patient/{child['id']}", token=token)
        assert current.json()["meta"]["versionId"] == "3", current.body


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_two_parents_moved_across_two_children_in_opposite_directions_both_succeed(
    stack: Stack,
) -> None:
    """A parent moved from one child to another locks both children, in one order, before
    anything else: two moves across the same two children in opposite directions queue one
    behind the other. Had each locked the child it left and then the one it joined, they
    would wait for each other until PostgreSQL broke the deadlock and one answered 503."""
    children = [await create(stack, patient()), await create(stack, patient(FNR_2))]
    first, second = sorted(child["id"] for child in children)
    leaving_first = await create(stack, related_person(first))
    leaving_second = await create(stack, related_person(second))
    token = writer(stack, "RelatedPerson")

    def moved(parent: dict[str, Any], child: str) -> asyncio.Task[Reply]:
        body = {**parent, "patient": {"reference": f"Patient/{child}"}}
        return asyncio.create_task(
            stack.call("PUT", f"RelatedPerson/{parent['id']}", body, token=token)
        )

    assert stack.directory.db is not None
    async with stack.directory.db.transaction() as conn:
        await lock_patient(conn, first)  # both moves queue here, in either order
        to_second = moved(leaving_first, second)
        await _waiting_for(stack, conn)
        to_first = moved(leaving_second, first)
        await _waiting_for(stack, conn, waiters=2)
    replies = await asyncio.gather(to_second, to_first)
    assert [reply.status for reply in replies] == [200, 200], [r.body for r in replies]
    assert replies[0].json()["patient"]["reference"] == f"Patient/{second}"
    assert replies[1].json()["patient"]["reference"] == f"Patient/{first}"
