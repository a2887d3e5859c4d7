"""A create sent again after a 504 is made once: conditional create on a client-assigned
identifier, for every type an organisation may create, against the running system.

Why this exists: a 504 means the outcome is unknown (the deploy guide, "Outages", and the
README's "Errors"), and integrators are told to repeat the create as a conditional create
on an identifier they assigned themselves (`If-None-Exist: identifier=<system>|<value>`,
or `request.ifNoneExist` in a transaction Bundle). `tests/test_definitions.py` checks only
statically that every such type declares an `identifier` search parameter; this checks
the behaviour the integrators rely on. For each type, each column of organisations the
permission table lets create it, and every organisation kind of that column
(`tests/permission_world.py`: one organisation of every kind, a child every one of them
has a relation to), the same request is sent twice:

- `transaction`: a transaction Bundle with one POST entry carrying `ifNoneExist`; the
  first answers `201` for the entry, the second `200` for it at the same resource (FHIR
  transaction rules);
- `header`: a plain `POST /fhir/<type>` with the `If-None-Exist` header; the first answers
  201, the second 200 with the same resource.

Afterwards a search by the identifier, as the caller, finds exactly that one resource, and
the owning service's store holds exactly one resource of the type carrying the identifier
(whatever the caller may see).

R4B's Subscription has no `identifier` element: a partner repeats it on its endpoint and
topic (`If-None-Exist: url=<endpoint>&criteria=<topic>`), each case with an endpoint of
its own.

Not covered, because no organisation creates them through the FHIR API (the permission
table, `shared.access.permissions.TABLE`, checked by
`test_the_covered_types_are_those_an_organisation_may_create`): Organization (only the
operator admits organisations), RelatedPerson (only the population register's
credential), Consent (recorded through the consent administration API, 405 on the FHIR
API), AuditEvent, Task and SubscriptionTopic (written by the services themselves, 405
for everyone).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote, urlparse

import pytest
import pytest_asyncio

from shared.access.permissions import NEVER, TABLE, Actor, Rule
from tests.permission_world import (
    OUTSIDER,
    Caller,
    Mark,
    PermissionWorld,
    marker,
    permission_world,
)
from tests.support import Reply

CLIENT_SYSTEM = "https://example.org/barnebro-test/conditional-create"
"""The system of the identifiers the client assigns (its values are uuid4s)."""

ORGANISATIONS = (Actor.HEALTH, Actor.BARNEVERNSTJENESTE, Actor.BARNEVERN, Actor.PARTNER)
"""The permission table's columns of organisations (who calls with an organisation's
token)."""

SERVICES = {
    "Practitioner": "directory",
    "PractitionerRole": "directory",
    "HealthcareService": "directory",
    "Patient": "directory",
    "ServiceRequest": "referral",
    "DocumentReference": "referral",
    "CarePlan": "careplan",
    "Goal": "careplan",
    "CareTeam": "careplan",
    "Subscription": "subscriptions",
}
"""Every type an organisation may create, and the service that stores it."""

NOT_CREATED_BY_ORGANISATIONS = {
    "Organization": "only the operator admits organisations to the register",
    "RelatedPerson": "parental responsibility comes only from the population register",
    "Consent": "recorded through the consent administration API; 405 on the FHIR API",
    "AuditEvent": "written by the services themselves; 405 for everyone",
    "Task": "made by the referral service with its referral; 405 for everyone",
    "SubscriptionTopic": "the topics are fixed; 405 for everyone",
    "CodeSystem": "generated from the project's own code declarations; 405 for everyone",
    "StructureDefinition": "generated from the project's own code declarations; 405 for everyone",
    "ValueSet": "generated from the project's own code declarations; 405 for everyone",
    "SearchParameter": "generated from the project's own code declarations; 405 for everyone",
    "OperationDefinition": "generated from the project's own code declarations; 405 for everyone",
    "Provenance": "derived from the statements it describes; 405 for everyone",
}
"""Every type of the table that no organisation creates through the FHIR API, and why:
they are not covered here."""


def creators(resource_type: str) -> list[Actor]:
    """The columns of organisations the permission table lets create `resource_type`."""
    row = TABLE[resource_type].get("create", NEVER)
    return [a for a in ORGANISATIONS if row.get(a, Rule.NO) not in (Rule.NO, Rule.NEVER)]


# -- the bodies ------------------------------------------------------------------------------

Body = Callable[[PermissionWorld, Caller, str], dict[str, Any]]
"""A valid body of a type, as `caller` creates it (`text` makes it recognisable)."""


def _own_org(world: PermissionWorld, caller: Caller) -> dict[str, str]:
    return {"reference": f"Organization/{world.organisations[caller.orgnr or OUTSIDER]}"}


def _practitioner(world: PermissionWorld, caller: Caller, text: str) -> dict[str, Any]:
    return {"resourceType": "Practitioner", "name": [{"family": text}]}


def _role(world: PermissionWorld, caller: Caller, text: str) -> dict[str, Any]:
    return {"resourceType": "PractitionerRole", "organization": _own_org(world, caller)}


def _service(world: PermissionWorld, caller: Caller, text: str) -> dict[str, Any]:
    return {
        "resourceType": "HealthcareService",
        "name": text,
        "providedBy": _own_org(world, caller),
    }


def _patient(world: PermissionWorld, caller: Caller, text: str) -> dict[str, Any]:
    return world.patient(world.new_fnr(), text)


def _referral(world: PermissionWorld, caller: Caller, text: str) -> dict[str, Any]:
    return world.referral(world.related.child, caller.orgnr or OUTSIDER, text)


def _attachment(world: PermissionWorld, caller: Caller, text: str) -> dict[str, Any]:
    return world.attachment(world.related.child, text)


def _plan(world: PermissionWorld, caller: Caller, text: str) -> dict[str, Any]:
    return world.plan(world.related.child, text)


def _goal(world: PermissionWorld, caller: Caller, text: str) -> dict[str, Any]:
    return world.goal(world.related.child, text)


def _team(world: PermissionWorld, caller: Caller, text: str) -> dict[str, Any]:
    return world.team(world.related.child, text, caller.orgnr or OUTSIDER)


def _subscription(world: PermissionWorld, caller: Caller, text: str) -> dict[str, Any]:
    return world.subscription(text)


BODIES: dict[str, Body] = {
    "Practitioner": _practitioner,
    "PractitionerRole": _role,
    "HealthcareService": _service,
    "Patient": _patient,
    "ServiceRequest": _referral,
    "DocumentReference": _attachment,
    "CarePlan": _plan,
    "Goal": _goal,
    "CareTeam": _team,
    "Subscription": _subscription,
}


# -- reading answers ---------------------------------------------------------------------------


def resource_path(location: str) -> str:
    """`…/fhir/Practitioner/1/_history/1` → `Practitioner/1`."""
    path = urlparse(location).path.split("/fhir/", 1)[1]
    return path.split("/_history")[0]


def status_code(status: str) -> str:
    """The code of a Bundle entry's `response.status` (`"201 Created"` → `"201"`)."""
    return status.split(" ", 1)[0]


def the_entry(reply: Reply, where: str) -> dict[str, Any]:
    """The one entry of a transaction-response."""
    assert reply.status == 200, (where, reply.status, reply.body)
    bundle = reply.json()
    assert bundle["resourceType"] == "Bundle", (where, bundle)
    assert bundle["type"] == "transaction-response", (where, bundle)
    [entry] = bundle["entry"]
    found: dict[str, Any] = entry
    return found


# -- the world ---------------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgresql"])
async def permissions(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[PermissionWorld]:
    """The permission table's world on each backend, built once for the module."""
    backend: str = request.param
    directory = tmp_path_factory.mktemp(f"conditional-create-{backend}")
    async with permission_world(directory, backend) as world:
        yield world


async def stored_with(
    world: PermissionWorld, resource_type: str, since: Mark, value: str
) -> set[str]:
    """The ids of the resources of `resource_type` the owning service stored a version of
    after `since` that carry the identifier value `value` (what any caller may see)."""
    versions = await world.written_since(SERVICES[resource_type], since, resource_type, None, value)
    return {version.split("/")[1] for version in versions}


def made_unique(body: dict[str, Any], value: str) -> str:
    """Give `body` what makes it unique (an identifier the client assigns, `value`); the
    search a conditional create of it names."""
    if body["resourceType"] == "Subscription":
        endpoint = f"{body['channel']['endpoint']}?case={value}"
        body["channel"]["endpoint"] = endpoint
        return f"url={quote(endpoint, safe='')}&criteria={quote(body['criteria'], safe='')}"
    body["identifier"] = [*body.get("identifier", []), {"system": CLIENT_SYSTEM, "value": value}]
    return f"identifier={quote(f'{CLIENT_SYSTEM}|{value}', safe='')}"


async def found_by(
    world: PermissionWorld, caller: Caller, resource_type: str, condition: str
) -> list[str]:
    """What a search by the condition finds, as the caller."""
    reply = await world.call("GET", f"{resource_type}?{condition}", token=caller.token)
    assert reply.status == 200, (caller.name, resource_type, reply.status, reply.body)
    return [
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in reply.json().get("entry", [])
        if e.get("search", {}).get("mode", "match") == "match"
    ]


async def send_in_transaction(
    world: PermissionWorld, caller: Caller, body: dict[str, Any], condition: str
) -> str:
    """The same transaction twice: created, then found; the resource (`Type/id`)."""
    resource_type = body["resourceType"]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": body,
                "request": {"method": "POST", "url": resource_type, "ifNoneExist": condition},
            }
        ],
    }
    where = f"{caller.name}: transaction POST {resource_type} ifNoneExist={condition}"
    first = the_entry(await world.call("POST", "", bundle, token=caller.token), where)
    assert status_code(first["response"]["status"]) == "201", (where, "first", first)
    created = resource_path(first["response"]["location"])
    again = the_entry(await world.call("POST", "", bundle, token=caller.token), where)
    assert status_code(again["response"]["status"]) == "200", (where, "again", again)
    assert resource_path(again["response"]["location"]) == created, (where, created, again)
    if "resource" in again:
        assert again["resource"]["id"] == created.split("/")[1], (where, created, again)
    return created


async def send_with_header(
    world: PermissionWorld, caller: Caller, body: dict[str, Any], condition: str
) -> str:
    """The same conditional POST twice: created, then found; the resource (`Type/id`)."""
    resource_type = body["resourceType"]
    headers = {"If-None-Exist": condition}
    where = f"{caller.name}: POST {resource_type} If-None-Exist: {condition}"
    first = await world.call("POST", resource_type, body, token=caller.token, headers=headers)
    assert first.status == 201, (where, "first", first.status, first.body)
    created = f"{resource_type}/{first.json()['id']}"
    assert resource_path(first.headers["Location"]) == created, (where, first.headers)
    again = await world.call("POST", resource_type, body, token=caller.token, headers=headers)
    assert again.status == 200, (where, "again", again.status, again.body)
    assert resource_path(again.headers["Location"]) == created, (where, created, again.headers)
    assert again.json()["id"] == created.split("/")[1], (where, created, again.body)
    return created


SENDERS = {"transaction": send_in_transaction, "header": send_with_header}

CASES = [
    pytest.param(resource_type, actor, how, id=f"{resource_type}-{actor.value}-{how}")
    for resource_type in SERVICES
    for actor in creators(resource_type)
    for how in SENDERS
]


# -- the tests ---------------------------------------------------------------------------------


def test_the_covered_types_are_those_an_organisation_may_create() -> None:
    """Every type some organisation kind may create is covered here, with a body, and every
    other type of the table is one no organisation creates through the FHIR API."""
    creatable = {t for t, actions in TABLE.items() if "create" in actions and creators(t)}
    assert creatable == set(SERVICES) == set(BODIES)
    others = {t for t, actions in TABLE.items() if "create" in actions} - creatable
    assert others == set(NOT_CREATED_BY_ORGANISATIONS)


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("resource_type", "actor", "how"), CASES)
async def test_a_conditional_create_sent_twice_creates_once(
    permissions: PermissionWorld, resource_type: str, actor: Actor, how: str
) -> None:
    world = permissions
    callers = world.callers(actor)
    assert callers, actor
    for caller in callers:
        value = str(uuid.uuid4())
        body = BODIES[resource_type](world, caller, marker())
        assert body["resourceType"] == resource_type, body
        condition = made_unique(body, value)
        since = await world.mark(SERVICES[resource_type])
        created = await SENDERS[how](world, caller, body, condition)
        found = await found_by(world, caller, resource_type, condition)
        assert found == [created], (caller.name, resource_type, value, found)
        stored = await stored_with(world, resource_type, since, value)
        assert stored == {created.split("/")[1]}, (caller.name, resource_type, created, stored)
