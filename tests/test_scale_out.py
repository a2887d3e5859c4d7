"""Two instances of a service on one database: requests are shared through the NATS queue
group, and every event is published once, in commit order, whichever relay sends it."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from services.consent.directory import CONSENT_SERVICE_CALLER
from services.directory import directory_spec
from services.gateway.callers import GATEWAY_CALLER
from shared.events import DomainEvent
from shared.runtime import ServiceRuntime
from shared.store.outbox import add_event
from tests.support import Stack, outbox_ids, stream_events, unsent, wait_for


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
async def test_two_instances_share_requests_and_publish_each_event_once(
    stack: Stack, tmp_path: Path
) -> None:
    # The default token's organisation is registered (by the operator) before counting.
    await stack.admit("974760673", "bup")
    second = ServiceRuntime(directory_spec(stack.settings), stack.settings)
    await second.start()
    try:
        assert stack.directory.fhir is not None and second.fhir is not None
        served: dict[str, int] = {"first": 0, "second": 0}
        # Not counted: the consent service reading the child's facts and the gateway
        # looking up the caller's kind in the register.
        internal = {CONSENT_SERVICE_CALLER.client_id, GATEWAY_CALLER.client_id}
        for name, runtime in (("first", stack.directory), ("second", second)):
            assert runtime.router is not None
            original = runtime.router.handle

            async def counting(request, body, _name=name, _original=original):  # type: ignore[no-untyped-def]
                if request.caller.client_id not in internal:
                    served[_name] += 1
                return await _original(request, body)

            runtime.router.handle = counting  # type: ignore[method-assign]
            runtime._host._handler = counting  # type: ignore[union-attr]
        child = await stack.call("POST", "Patient", {"resourceType": "Patient"})
        patient = child.json()["id"]
        parent = {"resourceType": "RelatedPerson", "patient": {"reference": f"Patient/{patient}"}}
        register = stack.register_token()  # the population register states parents
        replies = await asyncio.gather(
            *(
                stack.call("POST", "Practitioner", {"resourceType": "Practitioner",
                                                    "name": [{"family": f"S{i}"}]})
                for i in range(30)
            ),
            *(stack.call("POST", "RelatedPerson", parent, token=register) for _ in range(29)),
        )  # fmt: skip
        assert [r.status for r in replies] == [201] * 59
        assert served["first"] > 0 and served["second"] > 0, served
        assert served["first"] + served["second"] == 60, "59 creates and the Patient"

        async def drained() -> bool:
            return await unsent(stack) == 0

        await wait_for(drained, limit=20)
        events = [(i, e) for i, e in await stream_events(stack) if e.source == "directory"]
        ids = [msg_id for msg_id, _ in events]
        assert len(ids) == len(set(ids)) == 61, "the Organization, the Patient and 59 creates"
        assert set(ids) == await outbox_ids(stack)
        assert stack.directory.db is not None
        async with stack.directory.db.reader() as conn:
            rows = await conn.fetch("SELECT event_id, payload FROM outbox ORDER BY seq")
        for_patient = [str(r[0]) for r in rows if f'"patient":"{patient}"'.encode() in r[1]]
        assert len(for_patient) == 30
        published = [event.id for _, event in events if event.patient == patient]
        assert published == for_patient, "one patient's events keep their commit order"
    finally:
        await second.stop()


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_one_patients_events_are_published_in_commit_order(stack: Stack) -> None:
    """PostgreSQL assigns the outbox seq at insert, not at commit: a transaction that
    inserted first but commits last must not let a later event of the same patient
    overtake it."""
    db = stack.directory.db
    assert db is not None
    prefix = stack.settings.nats_prefix

    def event(name: str) -> DomainEvent:
        return DomainEvent(
            type=f"directory.Patient.{name}",
            source="directory",
            resource_type="Patient",
            resource_id="p-order",
            version_id="1",
            patient="p-order",
        )

    first, second = event("first"), event("second")
    first_inserted = asyncio.Event()

    async def slow_commit() -> None:
        async with db.transaction() as conn:
            await add_event(conn, first, prefix)
            await conn.execute("SELECT 1")  # the insert waits for a next statement: send it
            first_inserted.set()
            await asyncio.sleep(1.0)  # the relay polls several times meanwhile

    async def quick_commit() -> None:
        await first_inserted.wait()
        async with db.transaction() as conn:
            await add_event(conn, second, prefix)

    await asyncio.gather(slow_commit(), quick_commit())

    async def drained() -> bool:
        return await unsent(stack) == 0

    await wait_for(drained, limit=20)
    order = [e.id for _, e in await stream_events(stack) if e.patient == "p-order"]
    assert order == [first.id, second.id]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_published_events_are_pruned_after_the_retention_period(stack: Stack) -> None:
    relay = stack.directory.relay
    assert relay is not None
    await stack.admit("974760673", "bup")  # the caller's registration: one event more
    for i in range(3):
        body = {"resourceType": "Practitioner", "name": [{"family": f"P{i}"}]}
        assert (await stack.call("POST", "Practitioner", body)).status == 201

    async def drained() -> bool:
        return await unsent(stack) == 0

    await wait_for(drained)
    assert await relay.prune() == 0, "within the retention period nothing is deleted"
    relay._retention = timedelta(0)
    assert await relay.prune() == 4
    assert await outbox_ids(stack) == set()
    assert len(await stream_events(stack)) == 4, "the stream keeps what was published"
