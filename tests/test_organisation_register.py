"""A service keeps what it read of the register of organisations only until it changes.

The answers come from a stand-in for the directory (counting how often it is asked); the
change reports travel over the real NATS, on the subject the directory's events use.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import nats
import orjson
import pytest
from nats.aio.client import Client as NATS

from shared.organisation_register import (
    MAX_ANSWERS,
    Answer,
    OrganisationRegister,
    RegisterSender,
    announce_register_change,
    note_register_change,
)
from shared.transport.wire import Caller, FhirRequest, FhirResponse
from tests.support import nats_url

FOUND = (200, orjson.dumps({"resourceType": "Organization", "id": "o1"}))


def matched(*ids: str) -> Answer:
    entries = [{"resource": {"id": i}, "search": {"mode": "match"}} for i in ids]
    included = {"resource": {"id": "inc"}, "search": {"mode": "include"}}
    bundle = {"resourceType": "Bundle", "type": "searchset", "entry": [*entries, included]}
    return 200, orjson.dumps(bundle)


MATCHED = matched("o1")
NO_MATCH = (200, orjson.dumps({"resourceType": "Bundle", "type": "searchset", "entry": []}))
MISSING = (404, b"")


class Directory:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.asked = 0

    async def ask(self) -> Answer:
        self.asked += 1
        return self.answer


@pytest.fixture
async def connection() -> AsyncIterator[NATS]:
    nc = await nats.connect(nats_url())
    try:
        yield nc
    finally:
        await nc.close()


async def test_a_found_organisation_is_asked_for_once() -> None:
    register = OrganisationRegister()
    for answer in (FOUND, MATCHED):
        directory = Directory(answer)
        for _ in range(3):
            assert await register.answer(("key", answer), directory.ask) == answer
        assert directory.asked == 1


@pytest.mark.parametrize("answer", [MISSING, NO_MATCH])
async def test_not_found_is_kept_only_briefly(answer: Answer) -> None:
    register = OrganisationRegister(found_seconds=60, missed_seconds=0.2)
    directory = Directory(answer)
    await register.answer("key", directory.ask)
    await register.answer("key", directory.ask)
    assert directory.asked == 1
    await asyncio.sleep(0.25)
    await register.answer("key", directory.ask)
    assert directory.asked == 2


@pytest.mark.parametrize("status", [500, 503, 504, 403])
async def test_a_failing_directory_is_never_kept(status: int) -> None:
    register = OrganisationRegister()
    directory = Directory((status, b""))
    for _ in range(3):
        assert (await register.answer("key", directory.ask))[0] == status
    assert directory.asked == 3


@pytest.mark.services
async def test_a_change_forgets_the_answers_holding_the_organisation_and_every_miss(
    connection: NATS,
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    register = OrganisationRegister()
    await register.follow(connection, prefix)
    try:
        directories = {
            "o1": Directory(matched("o1")),
            "o1-and-o2": Directory(matched("o1", "o2")),
            "o2": Directory(matched("o2")),
            "miss": Directory(NO_MATCH),
        }

        async def ask_all() -> dict[str, int]:
            for key, directory in directories.items():
                await register.answer(key, directory.ask)
            return {key: directory.asked for key, directory in directories.items()}

        assert await ask_all() == {"o1": 1, "o1-and-o2": 1, "o2": 1, "miss": 1}
        # Another type's events and another prefix's change nothing.
        event = orjson.dumps({"resource_id": "o1"})
        await connection.publish(f"{prefix}.events.directory.Patient.updated", event)
        await connection.publish(f"x{prefix}.events.directory.Organization.updated", event)
        await connection.flush()
        await asyncio.sleep(0.2)
        assert await ask_all() == {"o1": 1, "o1-and-o2": 1, "o2": 1, "miss": 1}
        await connection.publish(f"{prefix}.events.directory.Organization.updated._", event)
        await connection.flush()
        await asyncio.sleep(0.2)
        assert await ask_all() == {"o1": 2, "o1-and-o2": 2, "o2": 1, "miss": 2}
        # A report that cannot be read forgets everything.
        await connection.publish(f"{prefix}.register.changed", b"not json")
        await connection.flush()
        await asyncio.sleep(0.2)
        assert await ask_all() == {"o1": 3, "o1-and-o2": 3, "o2": 2, "miss": 3}
    finally:
        await register.stop()


async def test_an_answer_under_way_when_the_register_changes_is_not_kept() -> None:
    register = OrganisationRegister()
    directory = Directory(FOUND)

    async def slow(changed: str) -> Answer:
        register.forget(frozenset({changed}))  # reported while the directory answers
        return await directory.ask()

    await register.answer("key", lambda: slow("another"))
    await register.answer("key", directory.ask)
    assert directory.asked == 1, "a change to another organisation does not matter"
    register.forget()
    await register.answer("key", lambda: slow("o1"))
    await register.answer("key", directory.ask)
    assert directory.asked == 3


async def test_the_kept_answers_are_bounded() -> None:
    register = OrganisationRegister()
    directory = Directory(FOUND)
    for n in range(MAX_ANSWERS + 1):
        await register.answer(n, directory.ask)
    await register.answer(0, directory.ask)
    assert directory.asked == MAX_ANSWERS + 2
    await register.answer(MAX_ANSWERS, directory.ask)
    assert directory.asked == MAX_ANSWERS + 2


@pytest.mark.services
async def test_a_committed_change_is_announced_before_the_answer(connection: NATS) -> None:
    """A unit of work that changed an Organization announces it after its commit; the
    announcement is flushed, so a register following it has forgotten what it kept by the
    time the writer could ask again."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    register = OrganisationRegister()
    other = await nats.connect(nats_url())
    await register.follow(other, prefix)
    try:
        directory = Directory(FOUND)
        await register.answer("a", directory.ask)

        async def request_without_a_change() -> None:
            await announce_register_change(connection, prefix)

        async def request_with_a_change() -> None:
            note_register_change("o1")
            await announce_register_change(connection, prefix)
            # Announced once: a second look after the same request says nothing new.
            await announce_register_change(connection, prefix)

        await asyncio.create_task(request_without_a_change())
        await asyncio.sleep(0.1)
        await register.answer("a", directory.ask)
        assert directory.asked == 1
        await asyncio.create_task(request_with_a_change())
        await other.flush()
        await asyncio.sleep(0.05)
        await register.answer("a", directory.ask)
        assert directory.asked == 2
    finally:
        await register.stop()
        await other.close()


class Forwarded:
    """A stand-in for the forwarder to the directory, counting what it is sent."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, subject: str, request: FhirRequest, body: bytes) -> FhirResponse:
        self.sent.append(f"{request.interaction} {request.resource_type}")
        return FhirResponse(status=FOUND[0], body=FOUND[1])


async def test_only_reads_and_searches_of_organisations_are_kept() -> None:
    forwarded = Forwarded()
    sender = RegisterSender(forwarded, OrganisationRegister())
    caller = Caller(credential="service", client_id="unit")
    asked = [
        FhirRequest(interaction="read", resource_type="Organization", id="o1", base_url=""),
        FhirRequest(interaction="search", resource_type="Organization", base_url=""),
        FhirRequest(interaction="read", resource_type="Patient", id="p1", base_url=""),
        FhirRequest(
            interaction="history-instance", resource_type="Organization", id="o1", base_url=""
        ),
        FhirRequest(
            interaction="read", resource_type="Organization", id="o1", base_url="", caller=caller
        ),
    ]
    for _ in range(3):
        for request in asked:
            answer = await sender.send("subject", request, b"")
            assert (answer.status, answer.body) == FOUND
    assert forwarded.sent == [
        "read Organization",
        "search Organization",
        "read Patient",
        "history-instance Organization",
        "read Organization",  # another caller's read is its own
        "read Patient",
        "history-instance Organization",
        "read Patient",
        "history-instance Organization",
    ]
