"""The consent service reads a child's facts from the directory in one search.

A child is looked at again whenever its record, its parents or its consents change, and
every look (the first in a unit of work) is a directory request and an AuditEvent. One
search (the Patient, with every RelatedPerson that names it included) gives the same facts
as a read and a search did, at half the requests and half the audit trail. What it found
is the facts: the parents registered hold parental responsibility, and a parent whose
responsibility the register ended has none.
"""

from __future__ import annotations

from typing import Any

from tests.consent_world import SKOLE, World
from tests.support import wait_for

CONSENT_SERVICE = "barnebro-consent"


async def _looks(world: World, child_id: str) -> list[dict[str, Any]]:
    """The directory's AuditEvents of the consent service's looks at the child."""
    reply = await world.stack.call(
        "GET",
        f"AuditEvent?patient=Patient/{child_id}&_count=200",
        token=world.stack.operator_token(),
    )
    assert reply.status == 200, reply.body
    events = [entry["resource"] for entry in reply.json().get("entry", [])]
    return [
        event
        for event in events
        if any(agent.get("altId") == CONSENT_SERVICE for agent in event.get("agent", []))
        and event["source"]["observer"]["display"] == "barnebro-directory"
    ]


def _named(event: dict[str, Any]) -> set[str]:
    return {str(entity["what"]["reference"]) for entity in event["entity"] if "what" in entity}


async def test_a_look_at_a_child_is_one_search_naming_the_child_and_its_parents(
    world: World,
) -> None:
    child = await world.child(10)
    parents = {child.mother, child.father}

    async def looked_at_with_both_parents() -> bool:
        return any(parents <= _named(e) for e in await _looks(world, child.id))

    await wait_for(looked_at_with_both_parents, 10)
    looks = await _looks(world, child.id)
    assert {e["subtype"][0]["code"] for e in looks} == {"search"}
    assert all(f"Patient/{child.id}" in _named(e) for e in looks)
    mother = world.token(SKOLE, fhir_user=child.mother)
    await wait_for(lambda: _reads(world, child.ref, mother, 200), 10)


async def test_a_parent_whose_responsibility_ended_holds_none(world: World) -> None:
    child = await world.child(10)
    father = world.token(SKOLE, fhir_user=child.father)
    await wait_for(lambda: _reads(world, child.ref, father, 200), 10)
    register = world.stack.register_token()
    seen = await world.stack.call("GET", child.father, token=register)
    ended = {**seen.json(), "active": False}
    reply = await world.stack.call("PUT", child.father, ended, token=register)
    assert reply.status == 200, reply.body
    # At once: the register's answer comes after every service can see the change.
    assert await _reads(world, child.ref, father, 404)
    mother = world.token(SKOLE, fhir_user=child.mother)
    assert await _reads(world, child.ref, mother, 200)


async def _reads(world: World, path: str, token: str, status: int) -> bool:
    return (await world.fhir("GET", path, by=SKOLE, token=token)).status == status
