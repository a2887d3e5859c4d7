"""Every cell of the permission table (`shared.access.permissions.TABLE`), against the
running system, and the table in the README.

`test_cell` is one case per (row, action, actor column), generated from `TABLE` (105 rows
x 7 columns = 735 cases per backend); each asks the real stack (gateway, directory,
consent, referral, care plan and subscriptions services on real NATS and a database,
`tests/permission_world.py`) as every caller of its column: one organisation of each kind
of the group, a parent logged in as themselves (`fhirUser`), the operator credential,
the population register's credential. What a case expects comes from the cell's rule
alone, so a change to the table fails here until the code follows it:

- `-`: the table's own 403 "Not permitted", the same answer for the child the caller
  would otherwise have a basis for, a child it has none for and a made-up id, and nothing
  stored (no version, and for an operation that writes none, no event). Every token here
  carries every scope (organisation and person tokens ask for them, the operator's and
  the register's credentials have them), so every refusal is the table's, never the
  token's;
- `405`: 405, for a real resource and a made-up one alike, and nothing stored;
- `all`: the request goes through (2xx), on data the caller has no relation to as well;
- `consent`, `related`, `lookup`, `own`: both sides of the condition. On data the caller
  has the basis for (the child every organisation was given a consent for, or the
  caller's own record) the request goes through; on data it has no basis for (a child no
  caller has any relation to, or another organisation's record it cannot see) the answer
  is exactly the answer for a made-up id (a read 404, a write 404/405/422, with the same
  body but for the ids; a search without it), and nothing is stored. Where `own` is
  about records the caller does see (the directory's Practitioner, PractitionerRole and
  HealthcareService; a child, referral or attachment another organisation wrote; a
  parent answering for the other parent), the other's record is refused with the
  ownership rule's own 403, which is not the table's "Not permitted", and nothing is
  stored. `lookup` also finds a child the caller has no relation to by its exact
  fødselsnummer, as the identifying subset only. A relation is made as the table says:
  `$start-care` (`all`) gives the caller a relation to a child it could not see before,
  at once, and `consent-create` (`related`) goes through for a child the caller has so
  taken into its care, while for a child it has no relation to it answers exactly as for
  a missing child.

The whole matrix runs on SQLite and on PostgreSQL, the world built once per backend
(module scope); both together take about 65 s.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import date, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from services.gateway.app import create_app
from services.gateway.consent_admin import OPENAPI_PATH, PREFIX
from shared.access.permissions import (
    CONSENT_API,
    CONSENT_API_ROUTES,
    INTERACTION_ACTIONS,
    SERVER,
    TABLE,
    Actor,
    Rule,
)
from shared.identifiers import FNR_SYSTEM
from tests.permission_world import (
    BARNEVERNSTJENESTE,
    MARKER_SYSTEM,
    OUTSIDER,
    SPARE,
    Caller,
    Mark,
    PermissionWorld,
    made_up,
    marker,
    permission_world,
)
from tests.referral_world import Child, org_reference
from tests.support import Reply, organisation, parent, wait_for

README = Path(__file__).resolve().parent.parent / "README.md"
NOT_PERMITTED = "Not permitted"

# -- what a cell sends ---------------------------------------------------------------------


@dataclass(frozen=True)
class Watch:
    """What a refused request must not have stored: versions of `res_type` in `service`
    of the resource `res_id`, or holding the text `text`; and, for an operation that
    writes no resource, `event` (the event `<service>.<res_type>.<event>` about
    `res_id`)."""

    service: str
    res_type: str
    res_id: str | None = None
    text: str | None = None
    event: str | None = None


@dataclass(frozen=True)
class Probe:
    """One request, as a caller sends it."""

    method: str
    path: str
    body: Any = None
    headers: dict[str, str] | None = None
    watch: Watch | None = None
    wanted: str | None = None
    """The reference the answer must be (a read) or contain (a search) when it goes
    through, and must not contain when the caller has no basis for it."""
    secrets: tuple[str, ...] = ()
    """Ids in the request, masked before its answer is compared with another's."""
    token: str | None = None
    """Sent with this token instead of the caller's."""


@dataclass(repr=False)
class Ctx:
    """One caller in one cell."""

    world: PermissionWorld
    caller: Caller
    row: str
    action: str
    rule: Rule
    basis_reply: Reply | None = None
    basis_probe: Probe | None = None

    def __repr__(self) -> str:
        return f"<{self.row} {self.action}: {self.caller.name} ({self.rule.value})>"


Build = Callable[[Ctx], Awaitable[Probe]]
Pair = Callable[[Ctx], Awaitable[tuple[Probe, Probe]]]
NotOwn = Callable[[Ctx], Awaitable[tuple[Probe, str]]]
Check = Callable[[Ctx, Reply, Probe], None]


def succeeded(ctx: Ctx, reply: Reply, probe: Probe) -> None:
    assert 200 <= reply.status < 300, (probe.method, probe.path, reply.status, reply.body)
    if probe.wanted is not None:
        assert probe.wanted in references(reply), (probe.wanted, reply.body)


@dataclass
class Scenario:
    """How to exercise one (row, action): `basis` is the request on data the caller has
    a basis for (for a caller the table refuses: the same request on the same data);
    `hidden` the same request on data it has none for and on a made-up id; `not_own`
    the request on another organisation's record it may see, with the refusal's text."""

    basis: Build
    ok: Check = succeeded
    hidden: Pair | None = None
    not_own: NotOwn | None = None
    extra: Callable[[Ctx], Awaitable[None]] | None = None


# -- reading answers -----------------------------------------------------------------------


def diagnostics(reply: Reply) -> str:
    try:
        data = reply.json()
    except Exception:
        return reply.body.decode(errors="replace")
    if isinstance(data, dict) and data.get("resourceType") == "OperationOutcome":
        return " | ".join(str(i.get("diagnostics", "")) for i in data.get("issue", []))
    return reply.body.decode(errors="replace")


def matches(reply: Reply) -> list[str]:
    data = reply.json()
    return [
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in data.get("entry", [])
        if e.get("search", {}).get("mode") == "match"
    ]


def references(reply: Reply) -> list[str]:
    """The references an answer holds: a search's matches, or the resource itself."""
    data = reply.json()
    if not isinstance(data, dict):
        return []
    if data.get("resourceType") == "Bundle" and data.get("type") == "searchset":
        return matches(reply)
    if "resourceType" in data and "id" in data:
        return [f"{data['resourceType']}/{data['id']}"]
    return []


def masked(text: bytes, secrets: tuple[str, ...]) -> str:
    found = text.decode(errors="replace")
    for index, secret in enumerate(secrets):
        found = found.replace(secret, f"<{index}>")
    return found


# -- the checks of each rule ---------------------------------------------------------------


async def send(ctx: Ctx, probe: Probe) -> Reply:
    return await ctx.world.call(
        probe.method,
        probe.path,
        probe.body,
        token=probe.token or ctx.caller.token,
        headers=probe.headers,
    )


async def sent_unwritten(ctx: Ctx, probe: Probe) -> Reply:
    """Send `probe`, which must not store anything; the answer."""
    watch = probe.watch
    since = await ctx.world.mark(watch.service) if watch else Mark(0, 0)
    reply = await send(ctx, probe)
    if watch is not None:
        stored = await ctx.world.written_since(
            watch.service, since, watch.res_type, watch.res_id, watch.text, watch.event
        )
        assert not stored, (probe.method, probe.path, reply.status, reply.body, stored)
    return reply


def where(ctx: Ctx, probe: Probe) -> str:
    return f"{ctx.caller.name}: {probe.method} {probe.path}"


def assert_refused(ctx: Ctx, probe: Probe, reply: Reply, status: int) -> None:
    """Refused with `status` by the table: a `-` is its 403 "Not permitted", a `405` is a
    405 for everyone."""
    assert reply.status == status, (where(ctx, probe), reply.status, reply.body)
    if status == 403:
        assert NOT_PERMITTED in diagnostics(reply), (where(ctx, probe), reply.body)


async def check_refused(ctx: Ctx, scenario: Scenario) -> None:
    """`-`: refused by who the caller is alone, whatever the data, storing nothing."""
    probes = [await scenario.basis(ctx)]
    if scenario.hidden is not None:
        probes += await scenario.hidden(ctx)
    answers = set()
    for probe in probes:
        reply = await sent_unwritten(ctx, probe)
        assert_refused(ctx, probe, reply, 403)
        answers.add(reply.body)
    assert len(answers) == 1, answers


async def check_never(ctx: Ctx, scenario: Scenario) -> None:
    """`405`: never offered, for a real resource and a made-up one alike."""
    probes = [await scenario.basis(ctx)]
    if scenario.hidden is not None:
        probes.append((await scenario.hidden(ctx))[1])
    answers = set()
    for probe in probes:
        reply = await sent_unwritten(ctx, probe)
        assert_refused(ctx, probe, reply, 405)
        answers.add(reply.body)
    assert len(answers) == 1, answers


async def check_allowed(ctx: Ctx, scenario: Scenario) -> None:
    """The request on data the caller has a basis for goes through."""
    probe = await scenario.basis(ctx)
    reply = await send(ctx, probe)
    assert NOT_PERMITTED not in diagnostics(reply), (where(ctx, probe), reply.body)
    ctx.basis_reply, ctx.basis_probe = reply, probe
    scenario.ok(ctx, reply, probe)


async def check_as_missing(ctx: Ctx, pair: tuple[Probe, Probe]) -> None:
    """Data the caller has no basis for answers exactly as a made-up id does."""
    hidden, missing = pair
    answer = await sent_unwritten(ctx, hidden)
    expected = await send(ctx, missing)
    assert answer.status == expected.status, (where(ctx, hidden), answer.body, expected.body)
    if answer.status == 200:
        found = matches(answer)
        assert hidden.wanted is not None and hidden.wanted not in found, (where(ctx, hidden), found)
        assert [masked(r.encode(), hidden.secrets) for r in found] == [
            masked(r.encode(), missing.secrets) for r in matches(expected)
        ], (where(ctx, hidden), answer.body, expected.body)
        return
    assert answer.status in (404, 405, 422), (where(ctx, hidden), answer.status, answer.body)
    assert masked(answer.body, hidden.secrets) == masked(expected.body, missing.secrets), (
        where(ctx, hidden),
        answer.body,
        expected.body,
    )


async def check_not_own(ctx: Ctx, not_own: NotOwn) -> None:
    """Another organisation's record the caller may see: refused by the ownership rule."""
    probe, refusal = await not_own(ctx)
    reply = await sent_unwritten(ctx, probe)
    assert reply.status == 403, (where(ctx, probe), reply.status, reply.body)
    assert refusal in diagnostics(reply), (where(ctx, probe), reply.body)
    assert NOT_PERMITTED not in diagnostics(reply), (where(ctx, probe), reply.body)


async def check_caller(ctx: Ctx, scenario: Scenario) -> None:
    rule = ctx.rule
    if rule is Rule.NO:
        await check_refused(ctx, scenario)
        return
    if rule is Rule.NEVER:
        await check_never(ctx, scenario)
        return
    await check_allowed(ctx, scenario)
    if rule is Rule.ALL:
        if scenario.hidden is not None:  # no condition on the data: the other goes through
            other, _ = await scenario.hidden(ctx)
            scenario.ok(ctx, await send(ctx, other), other)
        if scenario.extra is not None:
            await scenario.extra(ctx)
        return
    negatives = 0
    if scenario.hidden is not None:
        await check_as_missing(ctx, await scenario.hidden(ctx))
        negatives += 1
    if rule is Rule.OWN and scenario.not_own is not None:
        await check_not_own(ctx, scenario.not_own)
        negatives += 1
    if scenario.extra is not None:
        await scenario.extra(ctx)
    assert negatives, f"rule {rule} is not checked against data without a basis"


# -- building requests ---------------------------------------------------------------------


def type_of(reference: str) -> str:
    return reference.split("/", 1)[0]


def id_of(reference: str) -> str:
    return reference.split("/", 1)[1]


def parameters(**values: tuple[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": name, kind: value} for name, (kind, value) in values.items()],
    }


def own_org(ctx: Ctx) -> str:
    return f"Organization/{ctx.world.organisations[ctx.caller.orgnr or OUTSIDER]}"


def outsider_org(ctx: Ctx) -> str:
    return f"Organization/{ctx.world.organisations[OUTSIDER]}"


def service_of(resource_type: str) -> str:
    return SERVICES[resource_type]


SERVICES = {
    "Organization": "directory",
    "Practitioner": "directory",
    "PractitionerRole": "directory",
    "HealthcareService": "directory",
    "Patient": "directory",
    "RelatedPerson": "directory",
    "Consent": "consent",
    "AuditEvent": "consent",
    "CodeSystem": "consent",
    "StructureDefinition": "consent",
    "ValueSet": "consent",
    "SearchParameter": "consent",
    "OperationDefinition": "consent",
    "ServiceRequest": "referral",
    "Task": "referral",
    "DocumentReference": "referral",
    "CarePlan": "careplan",
    "Goal": "careplan",
    "CareTeam": "careplan",
    "Provenance": "careplan",  # derived at the edge; nothing of it is ever stored
    "Subscription": "subscriptions",
    "SubscriptionTopic": "subscriptions",
}


def watching(reference: str) -> Watch:
    return Watch(service_of(type_of(reference)), type_of(reference), res_id=id_of(reference))


def get(reference: str, **more: Any) -> Probe:
    return Probe("GET", reference, wanted=reference, secrets=(id_of(reference),), **more)


def search_by_id(reference: str, **more: Any) -> Probe:
    resource_type, res_id = reference.split("/", 1)
    return Probe(
        "GET", f"{resource_type}?_id={res_id}", wanted=reference, secrets=(res_id,), **more
    )


def put(reference: str, body: dict[str, Any], **more: Any) -> Probe:
    return Probe(
        "PUT",
        reference,
        {**body, "id": id_of(reference)},
        watch=watching(reference),
        secrets=(id_of(reference),),
        **more,
    )


def delete(reference: str) -> Probe:
    return Probe("DELETE", reference, watch=watching(reference), secrets=(id_of(reference),))


def post(resource: dict[str, Any], text: str, path: str | None = None) -> Probe:
    resource_type = resource["resourceType"]
    return Probe(
        "POST",
        path if path is not None else resource_type,
        resource,
        watch=Watch(service_of(resource_type), resource_type, text=text),
    )


def made_up_ref(resource_type: str) -> str:
    return f"{resource_type}/{made_up()}"


def without_meta(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in ("meta", "text")}


async def made(ctx: Ctx, resource: dict[str, Any], token: str | None = None) -> str:
    """Create `resource` as the caller (or `token`); its reference."""
    found = await ctx.world.created(resource["resourceType"], resource, token or ctx.caller.token)
    return f"{resource['resourceType']}/{found['id']}"


# -- reads and searches, the same for every type -------------------------------------------

Target = Callable[[Ctx], Awaitable[str]]


def reading(basis: Target, other: Target) -> Scenario:
    """Read by id: `basis` the caller may see, `other` it may not."""

    async def build(ctx: Ctx) -> Probe:
        return get(await basis(ctx))

    async def hidden(ctx: Ctx) -> tuple[Probe, Probe]:
        reference = await other(ctx)
        return get(reference), get(made_up_ref(type_of(reference)))

    return Scenario(build, hidden=hidden)


def searching(basis: Target, other: Target) -> Scenario:
    """Search by `_id`: the one the caller may see is found, the other is not."""

    async def build(ctx: Ctx) -> Probe:
        return search_by_id(await basis(ctx))

    async def hidden(ctx: Ctx) -> tuple[Probe, Probe]:
        reference = await other(ctx)
        return search_by_id(reference), search_by_id(made_up_ref(type_of(reference)))

    return Scenario(build, hidden=hidden)


def of_child(resource_type: str) -> tuple[Target, Target]:
    """The record of `resource_type` about the related child, and about the other."""

    async def related(ctx: Ctx) -> str:
        return ctx.world.related.refs[resource_type]

    async def unrelated(ctx: Ctx) -> str:
        return ctx.world.unrelated.refs[resource_type]

    return related, unrelated


def goal_provenance() -> tuple[Target, Target]:
    """The Provenance of the Goal about the related child, and about the other: derived
    from its target, so it answers as the Goal does."""

    async def of(ctx: Ctx, goal: str) -> str:
        version = (await ctx.world.current(goal))["meta"]["versionId"]
        return f"Provenance/goal.{goal.split('/')[1]}.{version}.self"

    async def related(ctx: Ctx) -> str:
        return await of(ctx, ctx.world.related.refs["Goal"])

    async def unrelated(ctx: Ctx) -> str:
        return await of(ctx, ctx.world.unrelated.refs["Goal"])

    return related, unrelated


def outsider_record(resource_type: str) -> Target:
    """The outsider's directory record of `resource_type`: every caller reads it."""

    async def target(ctx: Ctx) -> str:
        return ctx.world.outsiders[resource_type]

    return target


def fixed(reference: Callable[[PermissionWorld], str]) -> Target:
    async def target(ctx: Ctx) -> str:
        return reference(ctx.world)

    return target


# -- writes of a type no one writes --------------------------------------------------------


def never_written(resource_type: str, action: str, record: Target) -> Scenario:
    """create/update/delete of a type the server writes itself (405 for everyone)."""

    async def build(ctx: Ctx) -> Probe:
        reference = await record(ctx)
        if action == "delete":
            return delete(reference)
        current = without_meta(await ctx.world.current(reference))
        if action == "update":
            return put(reference, current)
        text = marker()
        forged = {k: v for k, v in current.items() if k != "id"}
        if resource_type == "AuditEvent":
            forged["outcomeDesc"] = text
        else:
            forged["identifier"] = [{"system": MARKER_SYSTEM, "value": text}]
        return post(forged, text)

    async def hidden(ctx: Ctx) -> tuple[Probe, Probe]:
        reference = made_up_ref(resource_type)
        probe = delete(reference) if action == "delete" else Probe("PUT", reference, {})
        return probe, probe

    return Scenario(build, hidden=hidden if action != "create" else None)


# -- the directory -------------------------------------------------------------------------


def organization_write(action: str) -> Scenario:
    async def build(ctx: Ctx) -> Probe:
        world = ctx.world
        text = marker()
        if action == "create":
            return post(organisation("skole", text, world.new_orgnr(), "0301"), text)
        spare = f"Organization/{world.organisations[SPARE]}"
        if action == "update":
            return put(spare, {**without_meta(await world.current(spare)), "alias": [text]})
        if ctx.rule is Rule.ALL:
            fresh = await made(ctx, organisation("skole", text, world.new_orgnr(), "0301"))
            return delete(fresh)
        return delete(spare)

    return Scenario(build)


def directory_resource(resource_type: str, text: str, organization: str) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": resource_type,
        "identifier": [{"system": MARKER_SYSTEM, "value": text}],
    }
    if resource_type == "Practitioner":
        resource["name"] = [{"family": text}]
    elif resource_type == "PractitionerRole":
        resource["organization"] = {"reference": organization}
    else:
        resource["name"] = text
        resource["providedBy"] = {"reference": organization}
    return resource


def registered_write(resource_type: str, action: str) -> Scenario:
    """Practitioner, PractitionerRole, HealthcareService: `own` is the organisation the
    record names (`organization`, `providedBy`) or, for a Practitioner, the one that
    registered it."""
    outsiders = outsider_record(resource_type)
    named = resource_type != "Practitioner"

    async def build(ctx: Ctx) -> Probe:
        text = marker()
        if action == "create":
            organization = own_org(ctx) if ctx.rule is Rule.OWN else outsider_org(ctx)
            resource = directory_resource(resource_type, text, organization)
            return post(resource, text)
        if ctx.rule is Rule.OWN:
            target = await made(ctx, directory_resource(resource_type, marker(), own_org(ctx)))
        elif ctx.rule is Rule.ALL and action == "delete":
            fresh = directory_resource(resource_type, marker(), outsider_org(ctx))
            target = await made(ctx, fresh, ctx.world.outsider)
        else:
            target = await outsiders(ctx)
        if action == "delete":
            return delete(target)
        current = without_meta(await ctx.world.current(target))
        return put(target, {**current, "identifier": [{"system": MARKER_SYSTEM, "value": text}]})

    async def not_own(ctx: Ctx) -> tuple[Probe, str]:
        if action == "create":
            text = marker()
            resource = directory_resource(resource_type, text, outsider_org(ctx))
            element = "organization" if resource_type == "PractitionerRole" else "providedBy"
            return post(resource, text), f"{element} must be the caller's organisation"
        target = await outsiders(ctx)
        refusal = f"Only the organisation that wrote {target} changes it"
        if action == "delete":
            return delete(target), refusal
        current = without_meta(await ctx.world.current(target))
        return put(target, {**current, "active": True}), refusal

    return Scenario(build, not_own=not_own if (named or action != "create") else None)


def patient_search() -> Scenario:
    """`lookup`: the related child by identifier in full, the other only by its exact
    identifier as the subset, and never by any other search; `related`: only the
    related child, whatever the search."""

    def by_fnr(child: Child) -> Probe:
        return Probe(
            "GET",
            f"Patient?identifier={FNR_SYSTEM}|{child.fnr}",
            wanted=f"Patient/{child.id}",
            secrets=(child.fnr, child.id),
        )

    async def build(ctx: Ctx) -> Probe:
        return by_fnr(ctx.world.related.child)

    def full_or_subset(ctx: Ctx, reply: Reply, probe: Probe) -> None:
        succeeded(ctx, reply, probe)
        [found] = [e["resource"] for e in reply.json()["entry"]]
        tags = [t.get("code") for t in found.get("meta", {}).get("tag", [])]
        # With a relation the record is released in full; the register has none.
        assert ("SUBSETTED" in tags) is (ctx.caller.actor is Actor.REGISTER), found

    async def hidden(ctx: Ctx) -> tuple[Probe, Probe]:
        other = ctx.world.unrelated.child
        if ctx.rule is Rule.LOOKUP:
            return search_by_id(f"Patient/{other.id}"), search_by_id(made_up_ref("Patient"))
        return by_fnr(other), by_fnr(Child(made_up(), ctx.world.new_fnr()))

    async def lookup(ctx: Ctx) -> None:
        if ctx.rule is not Rule.LOOKUP:
            return
        other = ctx.world.unrelated.child
        reply = await send(ctx, by_fnr(other))
        assert reply.status == 200, reply.body
        [found] = [e["resource"] for e in reply.json()["entry"]]
        assert found["id"] == other.id
        assert "SUBSETTED" in [t.get("code") for t in found["meta"]["tag"]], found
        assert set(found) <= {"resourceType", "id", "meta", "identifier", "name", "birthDate",
                              "gender", "active"}, found  # fmt: skip

    return Scenario(build, ok=full_or_subset, hidden=hidden, extra=lookup)


def patient_write(action: str) -> Scenario:
    async def build(ctx: Ctx) -> Probe:
        world = ctx.world
        text = marker()
        if action == "create":
            resource = world.patient(world.new_fnr(), text)
            return post(resource, text)
        related = f"Patient/{world.related.child.id}"
        if action == "update":
            current = without_meta(await world.current(related))
            return put(related, {**current, "active": True})
        owner = ctx.caller.token if ctx.rule is Rule.OWN else world.outsider
        return delete(await made(ctx, world.patient(world.new_fnr(), text), owner))

    async def hidden(ctx: Ctx) -> tuple[Probe, Probe]:
        world = ctx.world
        other = f"Patient/{world.unrelated.child.id}"
        missing = made_up_ref("Patient")
        if action == "delete":
            return delete(other), delete(missing)
        current = without_meta(await world.current(other))
        return put(other, current), put(missing, current)

    async def not_own(ctx: Ctx) -> tuple[Probe, str]:
        related = f"Patient/{ctx.world.related.child.id}"
        return delete(related), f"Only the organisation that wrote {related} changes it"

    return Scenario(
        build,
        hidden=hidden if action != "create" else None,
        not_own=not_own if action == "delete" else None,
    )


async def care_order(ctx: Ctx) -> Probe:
    child = f"Patient/{ctx.world.ordered.id}"
    body = parameters(action=("valueCode", "start"), date=("valueDate", date.today().isoformat()))
    return Probe("POST", f"{child}/$care-order", body, watch=watching(child))


CARE_STARTED = "care-started"


def start_care_probe(child_id: str) -> Probe:
    """`$start-care` on `Patient/<child_id>`: it writes no version of the Patient, only
    the directory's event that the care started (which a refusal must not record)."""
    return Probe(
        "POST",
        f"Patient/{child_id}/$start-care",
        parameters(reason=("valueString", "Henvist til oss for utredning")),
        watch=Watch("directory", "Patient", res_id=child_id, event=CARE_STARTED),
        secrets=(child_id,),
    )


def start_care() -> Scenario:
    """`all`: a caller takes into its care a child it has no relation to (a new one for
    each request, so that no other row's child gains a relation) and may read it at once;
    a made-up child is a 404. A caller the table refuses asks for the related child, the
    unrelated one and a made-up one alike."""

    async def unseen(ctx: Ctx) -> str:
        """A new child the caller cannot read yet."""
        child = await ctx.world.child("Omsorgstartsen", parents=False)
        probe = get(f"Patient/{child.id}")
        reply = await send(ctx, probe)
        assert reply.status == 404, (where(ctx, probe), reply.status, reply.body)
        return child.id

    async def build(ctx: Ctx) -> Probe:
        if ctx.rule is Rule.NO:
            return start_care_probe(ctx.world.related.child.id)
        return start_care_probe(await unseen(ctx))

    def started(ctx: Ctx, reply: Reply, probe: Probe) -> None:
        assert reply.status == 200, (where(ctx, probe), reply.status, reply.body)
        assert reply.json()["resourceType"] == "OperationOutcome", reply.body
        child = f"Patient/{probe.secrets[0]}"
        assert f"Care of {child} started" in diagnostics(reply), reply.body

    async def hidden(ctx: Ctx) -> tuple[Probe, Probe]:
        if ctx.rule is Rule.NO:
            other = ctx.world.unrelated.child.id
        else:  # taken into care too (`all`): a new child, not the unrelated one
            other = await unseen(ctx)
        return start_care_probe(other), start_care_probe(made_up())

    async def related_at_once(ctx: Ctx) -> None:
        """The child taken into care is the caller's to read at once, its event is
        recorded (and no version of it), and a made-up child is a 404 that records
        nothing."""
        assert ctx.basis_probe is not None
        child_id = ctx.basis_probe.secrets[0]
        probe = get(f"Patient/{child_id}")
        reply = await send(ctx, probe)
        assert reply.status == 200, (where(ctx, probe), reply.status, reply.body)
        assert reply.json()["id"] == child_id, reply.body
        recorded = await ctx.world.written_since(
            "directory", Mark(0, 0), "Patient", child_id, None, CARE_STARTED
        )
        # The registration's version (the operation writes none) and the one event.
        versions = [r for r in recorded if not r.startswith("event ")]
        assert versions == [f"Patient/{child_id}/_history/1"], recorded
        assert len(recorded) == 2, recorded
        missing = start_care_probe(made_up())
        reply = await sent_unwritten(ctx, missing)
        assert reply.status == 404, (where(ctx, missing), reply.status, reply.body)
        assert f"Patient/{missing.secrets[0]} is not known" in diagnostics(reply), reply.body

    return Scenario(build, ok=started, hidden=hidden, extra=related_at_once)


def related_person_write(action: str) -> Scenario:
    async def build(ctx: Ctx) -> Probe:
        world = ctx.world
        family = world.family
        text = marker()
        if action == "create":
            return post(parent(family.id, text), text)
        if action == "update":
            mother = family.parents[0]
            current = without_meta(await world.current(mother))
            return put(mother, {**current, "name": [{"family": "Nordmann", "given": [text]}]})
        if ctx.rule is Rule.ALL:
            return delete(await made(ctx, parent(family.id, text)))
        return delete(family.parents[1])

    return Scenario(build)


# -- the consent administration API --------------------------------------------------------


def api(ctx: Ctx, name: str, path_id: str | None = None, query: str = "") -> str:
    path = CONSENT_API_ROUTES[name][1].replace("{id}", path_id or "")
    return f"{ctx.world.admin}{path}{query}"


def api_probe(ctx: Ctx, name: str, **more: Any) -> Probe:
    path_id = more.pop("path_id", None)
    query = more.pop("query", "")
    return Probe(CONSENT_API_ROUTES[name][0], api(ctx, name, path_id, query), **more)


def about_child(name: str) -> Scenario:
    """The routes that answer questions about a child: only with a relation to it."""

    def probe(ctx: Ctx, child_id: str) -> Probe:
        if name == "consent-authority":
            query = f"?patient=Patient/{child_id}&purpose=informasjonsdeling"
            return api_probe(ctx, name, query=query, secrets=(child_id,))
        if name == "consent-list":
            return api_probe(ctx, name, path_id=child_id, secrets=(child_id,))
        caller = ctx.caller
        actor: dict[str, Any] = {}
        if caller.person is not None:
            actor = {"fhir_user": caller.person}
        elif caller.orgnr is not None:
            actor = {"orgnr": caller.orgnr, "kind": caller.kind}
        body = {"actor": actor, "patient": f"Patient/{child_id}", "category": "referral"}
        return api_probe(ctx, name, body=body, secrets=(child_id,))

    async def build(ctx: Ctx) -> Probe:
        return probe(ctx, ctx.world.related.child.id)

    async def hidden(ctx: Ctx) -> tuple[Probe, Probe]:
        return probe(ctx, ctx.world.unrelated.child.id), probe(ctx, made_up())

    def answered(ctx: Ctx, reply: Reply, probe: Probe) -> None:
        succeeded(ctx, reply, probe)
        answer = reply.json()
        if name == "access-decide":
            assert answer["permit"] is True, answer
        else:
            assert answer["patient"] == f"Patient/{ctx.world.related.child.id}", answer

    return Scenario(build, ok=answered, hidden=hidden)


def consent_create() -> Scenario:
    """`related`: a consent is recorded about a child the caller has a relation to: the
    `fresh` child, which it is refused for (as a missing child) until it takes the child
    into its care (`$start-care`); for a child it has no relation to the answer is a
    missing child's, and nothing is stored."""

    def probe(ctx: Ctx, child: Child, grantors: tuple[str, ...]) -> Probe:
        text = marker()
        body = ctx.world.consent_body(child, grantors=grantors, collected_by=text)
        return api_probe(
            ctx,
            "consent-create",
            body=body,
            watch=Watch("consent", "Consent", text=text),
            secrets=(child.id,),
        )

    async def build(ctx: Ctx) -> Probe:
        fresh = ctx.world.fresh
        if ctx.rule is not Rule.NO:
            before = probe(ctx, fresh, fresh.parents)
            reply = await sent_unwritten(ctx, before)
            assert reply.status == 404, (where(ctx, before), reply.status, reply.body)
            assert f"Patient/{fresh.id} is not known" in diagnostics(reply), reply.body
            taken = start_care_probe(fresh.id)
            reply = await send(ctx, taken)
            assert reply.status == 200, (where(ctx, taken), reply.status, reply.body)
        return probe(ctx, fresh, fresh.parents)

    def recorded(ctx: Ctx, reply: Reply, probe: Probe) -> None:
        assert reply.status == 201, (where(ctx, probe), reply.status, reply.body)
        assert reply.json()["status"] == "active", reply.body

    async def hidden(ctx: Ctx) -> tuple[Probe, Probe]:
        other = ctx.world.unrelated.child
        unknown = Child(made_up(), ctx.world.new_fnr(), other.parents)
        return probe(ctx, other, other.parents), probe(ctx, unknown, other.parents)

    return Scenario(build, ok=recorded, hidden=hidden)


def consent_change(name: str) -> Scenario:
    """Signing, withdrawing and recording the child's view, a hearing or an objection: an
    organisation changes a consent it may see (its own, here); a parent answers only as
    themselves."""

    def answer(ctx: Ctx, consent: str, grantor: str) -> Probe:
        body: dict[str, Any]
        if name == "consent-sign":
            body = {"grantor": grantor, "decision": "consent",
                    "method": "in-person", "collected_by": "Lege Li"}  # fmt: skip
        elif name == "consent-withdraw":
            body = {"by": grantor, "reason": "Vil ikke dele"}
        elif name == "consent-hearing":
            body = {"parent": grantor}
        else:
            body = {"heard": True, "statement": "Vil ikke", "heard_by": "Lege Li"}
            if name == "consent-objection":
                body.pop("heard")
        return api_probe(
            ctx,
            name,
            path_id=consent,
            body=body,
            watch=Watch("consent", "Consent", res_id=consent),
            secrets=(consent,),
        )

    async def build(ctx: Ctx) -> Probe:
        world = ctx.world
        child = world.related.child
        mother, father = child.parents
        if ctx.rule is Rule.NO:
            return answer(ctx, world.proposed, mother)
        proposed = name != "consent-withdraw"
        grantors = (father,) if proposed else None
        recorder = world.outsider if ctx.caller.person else ctx.caller.token
        body = world.consent_body(child, grantors=grantors)
        if name == "consent-hearing":
            body["daily_care"] = True
        consent = await world.consent(body, recorder, "proposed" if proposed else "active")
        return answer(ctx, consent, mother)

    async def hidden(ctx: Ctx) -> tuple[Probe, Probe]:
        other = ctx.world.unrelated
        grantor = ctx.caller.person or other.child.parents[0]
        return (
            answer(ctx, id_of(other.refs["Consent"]), grantor),
            answer(ctx, made_up(), grantor),
        )

    async def not_own(ctx: Ctx) -> tuple[Probe, str]:
        father = ctx.world.related.child.parents[1]
        return answer(ctx, ctx.world.proposed, father), f"cannot answer for {father}"

    return Scenario(build, hidden=hidden, not_own=not_own)


REPORTER_HPR = "9144889"
"""The health person a §33 report names (opplysningsplikt is a person's duty)."""


def reporting(ctx: Ctx) -> str | None:
    """The caller's organisation token naming a health person (None: the caller's own)."""
    caller = ctx.caller
    return ctx.world.org_token(caller.orgnr, hpr=REPORTER_HPR) if caller.orgnr else None


async def disclosure(ctx: Ctx) -> Probe:
    world = ctx.world
    text = marker()
    body = {
        "patient": f"Patient/{world.related.child.id}",
        "recipient": BARNEVERNSTJENESTE,
        "resources": [world.related.refs["ServiceRequest"]],
        "reason": text,
    }
    return api_probe(
        ctx,
        "disclosure-hpl33",
        body=body,
        watch=Watch("consent", "AuditEvent", text=text),
        token=reporting(ctx),
    )


async def disclosure_hidden(ctx: Ctx) -> tuple[Probe, Probe]:
    def probe(child_id: str, referral: str) -> Probe:
        text = marker()
        body = {
            "patient": f"Patient/{child_id}",
            "recipient": BARNEVERNSTJENESTE,
            "resources": [f"ServiceRequest/{referral}"],
            "reason": text,
        }
        return api_probe(
            ctx,
            "disclosure-hpl33",
            body=body,
            watch=Watch("consent", "AuditEvent", text=text),
            secrets=(child_id, referral),
            token=reporting(ctx),
        )

    other = ctx.world.unrelated
    return (
        probe(other.child.id, other.id("ServiceRequest")),
        probe(made_up(), made_up()),
    )


def disclosure_list() -> Scenario:
    """A child's §33 disclosures: only with a relation to it (the operator: any child)."""

    def probe(ctx: Ctx, child_id: str) -> Probe:
        return api_probe(ctx, "disclosure-list", path_id=child_id, secrets=(child_id,))

    async def build(ctx: Ctx) -> Probe:
        return probe(ctx, ctx.world.related.child.id)

    async def hidden(ctx: Ctx) -> tuple[Probe, Probe]:
        return probe(ctx, ctx.world.unrelated.child.id), probe(ctx, made_up())

    def answered(ctx: Ctx, reply: Reply, probe: Probe) -> None:
        succeeded(ctx, reply, probe)
        assert isinstance(reply.json()["disclosures"], list), reply.body

    return Scenario(build, ok=answered, hidden=hidden)


def disclosure_close() -> Scenario:
    """`own`: a health organisation closes the §33 disclosures it reported; another's
    answers exactly as one that does not exist. The operator closes any."""

    async def reported(ctx: Ctx, token: str) -> str:
        """A new disclosure about the related child, reported with `token`: its id."""
        world = ctx.world
        body = {
            "patient": f"Patient/{world.related.child.id}",
            "recipient": BARNEVERNSTJENESTE,
            "resources": [world.related.refs["ServiceRequest"]],
            "reason": marker(),
        }
        reply = await world.call("POST", api(ctx, "disclosure-hpl33"), body, token=token)
        assert reply.status == 201, reply.body
        return str(reply.json()["audit_event"]["id"])

    def probe(ctx: Ctx, disclosure_id: str) -> Probe:
        return api_probe(
            ctx,
            "disclosure-close",
            path_id=disclosure_id,
            body={"reason": "Meldt ved en feil"},
            watch=Watch("consent", "AuditEvent", res_id=disclosure_id),
            secrets=(disclosure_id,),
            token=reporting(ctx),  # a health person of the organisation closes it
        )

    def outsiders(ctx: Ctx) -> str:
        return ctx.world.org_token(OUTSIDER, hpr=REPORTER_HPR)

    async def build(ctx: Ctx) -> Probe:
        own = reporting(ctx) if ctx.rule is Rule.OWN else None
        return probe(ctx, await reported(ctx, own or outsiders(ctx)))

    async def hidden(ctx: Ctx) -> tuple[Probe, Probe]:
        return probe(ctx, await reported(ctx, outsiders(ctx))), probe(ctx, made_up())

    def closed(ctx: Ctx, reply: Reply, probe: Probe) -> None:
        succeeded(ctx, reply, probe)
        assert reply.json()["status"] == "closed", reply.body

    return Scenario(build, ok=closed, hidden=hidden)


# -- the audit trail -----------------------------------------------------------------------


async def own_event(ctx: Ctx) -> str:
    world = ctx.world
    if ctx.rule is not Rule.OWN or ctx.caller.orgnr is None:
        return f"AuditEvent/{world.outsider_event}"
    await world.audited(ctx.caller)
    # A record of its own read, made by the organisation itself: it is also named (not
    # as the requestor) on what a person with its number in their token did, and that
    # record may be stored before this one.
    operator, orgnr, own = world.stack.operator_token(), ctx.caller.orgnr, []

    async def own_read() -> bool:
        for event in await world.events_of(orgnr, "&subtype=read"):
            record = (await world.call("GET", f"AuditEvent/{event}", token=operator)).json()
            requestors = [a["who"] for a in record["agent"] if a.get("requestor")]
            if any(w.get("identifier", {}).get("value") == orgnr for w in requestors):
                own.append(f"AuditEvent/{event}")
                return True
        return False

    try:
        await wait_for(own_read, 15)
    except AssertionError:
        raise AssertionError(f"no record of {orgnr}'s own read") from None
    return str(own[0])


def audit_search() -> Scenario:
    async def build(ctx: Ctx) -> Probe:
        if ctx.rule is Rule.OWN and ctx.caller.orgnr is not None:
            await ctx.world.audited(ctx.caller)
            return Probe("GET", "AuditEvent?_count=200")
        return search_by_id(f"AuditEvent/{ctx.world.outsider_event}")

    def only_own(ctx: Ctx, reply: Reply, probe: Probe) -> None:
        succeeded(ctx, reply, probe)
        if ctx.rule is not Rule.OWN:
            return
        entries = [e["resource"] for e in reply.json()["entry"]]
        assert entries, reply.body
        for event in entries:
            requestors = [
                a["who"]["identifier"]["value"]
                for a in event.get("agent", [])
                if a.get("requestor") is True and "identifier" in a.get("who", {})
            ]
            assert ctx.caller.orgnr in requestors, event

    async def hidden(ctx: Ctx) -> tuple[Probe, Probe]:
        return (
            search_by_id(f"AuditEvent/{ctx.world.outsider_event}"),
            search_by_id(made_up_ref("AuditEvent")),
        )

    return Scenario(build, ok=only_own, hidden=hidden)


async def review(ctx: Ctx) -> Probe:
    event = f"AuditEvent/{ctx.world.emergency_event}"
    body = parameters(conclusion=("valueCode", "justified"), reviewer=("valueString", "Revisor"))
    return Probe("POST", f"{event}/$review", body, watch=watching(event))


# -- referrals -----------------------------------------------------------------------------


def referral_write(resource_type: str, action: str) -> Scenario:
    """ServiceRequest and DocumentReference: created by referrers, amended by their
    writer (`own`)."""

    def resource(ctx: Ctx, text: str) -> dict[str, Any]:
        child = ctx.world.related.child
        if resource_type == "ServiceRequest":
            return ctx.world.referral(child, ctx.caller.orgnr or OUTSIDER, text)
        return ctx.world.attachment(child, text)

    def amended(current: dict[str, Any], text: str) -> dict[str, Any]:
        if resource_type == "ServiceRequest":
            return {**current, "reasonCode": [{"text": text}]}
        return {**current, "description": text}

    async def build(ctx: Ctx) -> Probe:
        text = marker()
        if action == "create":
            return post(resource(ctx, text), text)
        if ctx.rule is Rule.OWN:
            target = await made(ctx, resource(ctx, marker()))
            current = await ctx.world.current(target, ctx.caller.token)
        else:
            target = ctx.world.related.refs[resource_type]
            current = await ctx.world.current(target)
        return put(target, amended(without_meta(current), text))

    async def hidden(ctx: Ctx) -> tuple[Probe, Probe]:
        other = ctx.world.unrelated.refs[resource_type]
        current = amended(without_meta(await ctx.world.current(other)), marker())
        return put(other, current), put(made_up_ref(resource_type), current)

    async def not_own(ctx: Ctx) -> tuple[Probe, str]:
        target = ctx.world.related.refs[resource_type]
        current = without_meta(await ctx.world.current(target))
        return put(target, amended(current, marker())), f"Only the organisation that wrote {target}"

    if action == "create":
        return Scenario(build)
    return Scenario(build, hidden=hidden, not_own=not_own)


def task_update() -> Scenario:
    """`consent` for the referrers: a referrer cancels the Task of its own referral; a
    caller the table refuses asks to change the outsider's."""

    async def build(ctx: Ctx) -> Probe:
        world = ctx.world
        if ctx.rule is not Rule.NO:
            referral = await made(
                ctx, world.referral(world.related.child, ctx.caller.orgnr or "", "x")
            )
            found = await world.call("GET", f"Task?focus={referral}", token=ctx.caller.token)
            [task] = [e["resource"] for e in found.json()["entry"]]
            target, reader = f"Task/{task['id']}", ctx.caller.token
        else:
            target, reader = world.related.refs["Task"], world.outsider
        reply = await world.call("GET", target, token=reader)
        current = without_meta(reply.json())
        current.pop("businessStatus", None)
        return put(
            target, {**current, "status": "cancelled"}, headers={"If-Match": reply.headers["ETag"]}
        )

    async def hidden(ctx: Ctx) -> tuple[Probe, Probe]:
        other = ctx.world.unrelated.refs["Task"]
        current = without_meta(await ctx.world.current(other))
        return put(other, current), put(made_up_ref("Task"), current)

    return Scenario(build, hidden=hidden)


# -- care plans ----------------------------------------------------------------------------


def plan_resource(ctx: Ctx, resource_type: str, child: Child, text: str) -> dict[str, Any]:
    world = ctx.world
    if resource_type == "CarePlan":
        return world.plan(child, text)
    if resource_type == "Goal":
        return world.goal(child, text)
    return world.team(child, text, ctx.caller.orgnr or OUTSIDER)


def plan_amended(resource_type: str, current: dict[str, Any], text: str) -> dict[str, Any]:
    if resource_type == "CarePlan":
        return {**current, "description": text}
    if resource_type == "Goal":
        return {**current, "description": {"text": text}}
    return {**current, "name": text}


def plan_write(resource_type: str, action: str) -> Scenario:
    async def build(ctx: Ctx) -> Probe:
        world = ctx.world
        text = marker()
        if action == "create":
            return post(plan_resource(ctx, resource_type, world.related.child, text), text)
        target = world.related.refs[resource_type]
        current = without_meta(await world.current(target))
        return put(target, plan_amended(resource_type, current, text))

    async def hidden(ctx: Ctx) -> tuple[Probe, Probe]:
        world = ctx.world
        if action == "create":
            child = world.unrelated.child
            unknown = Child(made_up(), world.new_fnr())
            first, second = marker(), marker()
            return (
                replace(post(plan_resource(ctx, resource_type, child, first), first),
                        secrets=(child.fnr,)),
                replace(post(plan_resource(ctx, resource_type, unknown, second), second),
                        secrets=(unknown.fnr,)),
            )  # fmt: skip
        other = world.unrelated.refs[resource_type]
        current = plan_amended(resource_type, without_meta(await world.current(other)), marker())
        return put(other, current), put(made_up_ref(resource_type), current)

    return Scenario(build, hidden=hidden)


def assign_coordinator() -> Scenario:
    def probe(ctx: Ctx, team: str) -> Probe:
        start = date.today() + timedelta(days=next(COORDINATOR_DAYS))
        body = parameters(
            coordinator=("valueReference", org_reference(ctx.caller.orgnr or OUTSIDER)),
            reason=("valueString", "Ny koordinator"),
            start=("valueDate", start.isoformat()),
        )
        return Probe(
            "POST",
            f"{team}/$assign-coordinator",
            body,
            watch=watching(team),
            secrets=(id_of(team),),
        )

    async def build(ctx: Ctx) -> Probe:
        return probe(ctx, ctx.world.related.refs["CareTeam"])

    async def hidden(ctx: Ctx) -> tuple[Probe, Probe]:
        return probe(ctx, ctx.world.unrelated.refs["CareTeam"]), probe(ctx, made_up_ref("CareTeam"))

    return Scenario(build, hidden=hidden)


def _days() -> Any:
    day = 0
    while True:
        day += 1
        yield day


COORDINATOR_DAYS = _days()
"""Each appointment starts a day after the one before it, so each hands over properly."""


# -- subscriptions -------------------------------------------------------------------------


async def own_subscription(ctx: Ctx) -> str:
    if ctx.rule is Rule.OWN:
        return f"Subscription/{await ctx.world.own_subscription(ctx.caller)}"
    return f"Subscription/{ctx.world.outsider_subscription}"


async def others_subscription(ctx: Ctx) -> str:
    return f"Subscription/{ctx.world.outsider_subscription}"


def subscription_write(action: str) -> Scenario:
    async def build(ctx: Ctx) -> Probe:
        world = ctx.world
        text = marker()
        if action == "create":
            return post(world.subscription(text), text)
        if ctx.rule is Rule.OWN:
            target = (
                await made(ctx, world.subscription(marker()))
                if action == "delete"
                else await own_subscription(ctx)
            )
        else:
            target = await others_subscription(ctx)
        if action == "delete":
            return delete(target)
        reply = await world.call(
            "GET", target, token=ctx.caller.token if ctx.rule is Rule.OWN else world.outsider
        )
        current = without_meta(reply.json())
        return put(target, {**current, "reason": text, "status": "off"})

    async def hidden(ctx: Ctx) -> tuple[Probe, Probe]:
        world = ctx.world
        if action == "create":
            if ctx.basis_reply is None:  # a caller the table refuses: it made none
                first, second = marker(), marker()
                return (
                    post(world.subscription(first), first),
                    post(world.subscription(second), second),
                )
            # What the caller subscribed is its own: no one else may learn of it.
            mine = f"Subscription/{ctx.basis_reply.json()['id']}"
            return (
                get(mine, token=world.outsider),
                get(made_up_ref("Subscription"), token=world.outsider),
            )
        other = await others_subscription(ctx)
        if action == "delete":
            return delete(other), delete(made_up_ref("Subscription"))
        current = without_meta(await world.current(other))
        return put(other, current), put(made_up_ref("Subscription"), current)

    return Scenario(build, hidden=hidden)


def subscription_operation(name: str) -> Scenario:
    async def build(ctx: Ctx) -> Probe:
        target = await own_subscription(ctx)
        return Probe("GET", f"{target}/{name}", secrets=(id_of(target),))

    async def hidden(ctx: Ctx) -> tuple[Probe, Probe]:
        other = await others_subscription(ctx)
        missing = made_up_ref("Subscription")
        return (
            Probe("GET", f"{other}/{name}", secrets=(id_of(other),)),
            Probe("GET", f"{missing}/{name}", secrets=(id_of(missing),)),
        )

    return Scenario(build, hidden=hidden)


TOPIC = "SubscriptionTopic/referral-status"
CODE_SYSTEM = "CodeSystem/consent-purpose"
GENERATED = (
    "StructureDefinition/barnebro-Patient",
    "ValueSet/consent-purpose",
    "SearchParameter/Consent-purpose",
    "OperationDefinition/start-care",
)
"""A conformance resource of each type, generated from the code like the code systems."""


def topic_write(action: str) -> Scenario:
    async def build(ctx: Ctx) -> Probe:
        if action == "delete":
            return delete(TOPIC)
        current = without_meta(await ctx.world.current(TOPIC))
        text = marker()
        if action == "update":
            return put(TOPIC, {**current, "title": text})
        forged = {k: v for k, v in current.items() if k != "id"}
        return post({**forged, "title": text, "url": f"{forged['url']}-{text}"}, text)

    async def hidden(ctx: Ctx) -> tuple[Probe, Probe]:
        missing = made_up_ref("SubscriptionTopic")
        probe = delete(missing) if action == "delete" else Probe("PUT", missing, {})
        return probe, probe

    return Scenario(build, hidden=hidden if action != "create" else None)


# -- the server's own routes ---------------------------------------------------------------


async def metadata(ctx: Ctx) -> Probe:
    return Probe("GET", "metadata")


async def batch(ctx: Ctx) -> Probe:
    return Probe("POST", "", {"resourceType": "Bundle", "type": "batch", "entry": []})


# -- every (row, action) -------------------------------------------------------------------


def scenarios() -> dict[tuple[str, str], Scenario]:
    found: dict[tuple[str, str], Scenario] = {
        (SERVER, "GET /fhir/metadata"): Scenario(metadata),
        (SERVER, "POST /fhir (batch, transaction)"): Scenario(batch),
    }
    spare = fixed(lambda w: f"Organization/{w.organisations[SPARE]}")
    outsider = fixed(lambda w: f"Organization/{w.organisations[OUTSIDER]}")
    found[("Organization", "read")] = reading(spare, outsider)
    found[("Organization", "search")] = searching(spare, outsider)
    for action in ("create", "update", "delete"):
        found[("Organization", action)] = organization_write(action)
    for resource_type in ("Practitioner", "PractitionerRole", "HealthcareService"):
        record = outsider_record(resource_type)
        found[(resource_type, "read")] = reading(record, record)
        found[(resource_type, "search")] = searching(record, record)
        for action in ("create", "update", "delete"):
            found[(resource_type, action)] = registered_write(resource_type, action)
    children = (
        fixed(lambda w: f"Patient/{w.related.child.id}"),
        fixed(lambda w: f"Patient/{w.unrelated.child.id}"),
    )
    found[("Patient", "read")] = reading(*children)
    found[("Patient", "search")] = patient_search()
    for action in ("create", "update", "delete"):
        found[("Patient", action)] = patient_write(action)
    found[("Patient", "$care-order")] = Scenario(care_order)
    found[("Patient", "$start-care")] = start_care()
    fathers = (
        fixed(lambda w: w.related.child.parents[1]),
        fixed(lambda w: w.unrelated.child.parents[1]),
    )
    found[("RelatedPerson", "read")] = reading(*fathers)
    found[("RelatedPerson", "search")] = searching(*fathers)
    for action in ("create", "update", "delete"):
        found[("RelatedPerson", action)] = related_person_write(action)
    for resource_type in ("Consent", "ServiceRequest", "Task", "DocumentReference", "CarePlan",
                          "Goal", "CareTeam"):  # fmt: skip
        found[(resource_type, "read")] = reading(*of_child(resource_type))
        found[(resource_type, "search")] = searching(*of_child(resource_type))
    outsider_event = fixed(lambda w: f"AuditEvent/{w.outsider_event}")
    for action in ("create", "update", "delete"):
        found[("Consent", action)] = never_written("Consent", action, of_child("Consent")[0])
        found[("AuditEvent", action)] = never_written("AuditEvent", action, outsider_event)
        found[("SubscriptionTopic", action)] = topic_write(action)
        found[("Subscription", action)] = subscription_write(action)
    found[("AuditEvent", "read")] = reading(own_event, outsider_event)
    found[("AuditEvent", "search")] = audit_search()
    found[("AuditEvent", "$review")] = Scenario(review)
    for name in ("consent-authority", "consent-list", "access-decide"):
        found[(CONSENT_API, name)] = about_child(name)
    found[(CONSENT_API, "consent-create")] = consent_create()
    for name in ("consent-sign", "consent-withdraw", "consent-child-view", "consent-hearing",
                 "consent-objection"):  # fmt: skip
        found[(CONSENT_API, name)] = consent_change(name)
    found[(CONSENT_API, "disclosure-hpl33")] = Scenario(disclosure, hidden=disclosure_hidden)
    found[(CONSENT_API, "disclosure-list")] = disclosure_list()
    found[(CONSENT_API, "disclosure-close")] = disclosure_close()
    for resource_type in ("ServiceRequest", "DocumentReference"):
        for action in ("create", "update"):
            found[(resource_type, action)] = referral_write(resource_type, action)
    found[("Task", "create")] = never_written("Task", "create", of_child("Task")[0])
    found[("Task", "update")] = task_update()
    for resource_type in ("ServiceRequest", "Task", "DocumentReference", "CarePlan", "Goal",
                          "CareTeam"):  # fmt: skip
        found[(resource_type, "delete")] = never_written(
            resource_type, "delete", of_child(resource_type)[0]
        )
    for resource_type in ("CarePlan", "Goal", "CareTeam"):
        for action in ("create", "update"):
            found[(resource_type, action)] = plan_write(resource_type, action)
    found[("CareTeam", "$assign-coordinator")] = assign_coordinator()
    for action in ("read", "search"):
        scenario = reading if action == "read" else searching
        found[("Provenance", action)] = scenario(*goal_provenance())
    for action in ("create", "update", "delete"):
        found[("Provenance", action)] = never_written("Provenance", action, goal_provenance()[0])
    found[("Subscription", "read")] = reading(own_subscription, others_subscription)
    found[("Subscription", "search")] = searching(own_subscription, others_subscription)
    for name in ("$status", "$events"):
        found[("Subscription", name)] = subscription_operation(name)
    topic = fixed(lambda w: TOPIC)
    found[("SubscriptionTopic", "read")] = reading(topic, topic)
    found[("SubscriptionTopic", "search")] = searching(topic, topic)
    code_system = fixed(lambda w: CODE_SYSTEM)
    found[("CodeSystem", "read")] = reading(code_system, code_system)
    found[("CodeSystem", "search")] = searching(code_system, code_system)
    for action in ("create", "update", "delete"):
        found[("CodeSystem", action)] = never_written("CodeSystem", action, code_system)
    for reference in GENERATED:
        kind = type_of(reference)
        generated = fixed(partial(lambda reference, w: reference, reference))
        found[(kind, "read")] = reading(generated, generated)
        found[(kind, "search")] = searching(generated, generated)
        for action in ("create", "update", "delete"):
            found[(kind, action)] = never_written(kind, action, generated)
    return found


SCENARIOS = scenarios()


# -- the tests -----------------------------------------------------------------------------


PATCH_ACTION = "update (PATCH)"
"""A PATCH takes the update cell: each update row is exercised a second time with its
requests sent as PATCH."""


def as_patch(probe: Probe) -> Probe:
    """A PUT sent as the PATCH that makes the same change: a JSON Patch replacing the
    resource with the PUT's body (other requests, such as a delete, are left as they are)."""
    if probe.method != "PUT":
        return probe
    return replace(
        probe,
        method="PATCH",
        body=[{"op": "replace", "path": "", "value": probe.body}],
        headers={**(probe.headers or {}), "Content-Type": "application/json-patch+json"},
    )


def patched(scenario: Scenario) -> Scenario:
    """The update scenario `scenario` with every PUT it sends made a PATCH."""

    async def basis(ctx: Ctx) -> Probe:
        return as_patch(await scenario.basis(ctx))

    async def hidden(ctx: Ctx) -> tuple[Probe, Probe]:
        assert scenario.hidden is not None
        one, other = await scenario.hidden(ctx)
        return as_patch(one), as_patch(other)

    async def not_own(ctx: Ctx) -> tuple[Probe, str]:
        assert scenario.not_own is not None
        probe, refusal = await scenario.not_own(ctx)
        return as_patch(probe), refusal

    return replace(
        scenario,
        basis=basis,
        hidden=hidden if scenario.hidden is not None else None,
        not_own=not_own if scenario.not_own is not None else None,
    )


def cell_id(row: str, action: str, actor: Actor) -> str:
    names = {"GET /fhir/metadata": "metadata", "POST /fhir (batch, transaction)": "batch"}
    return "-".join((row.replace(" ", "_"), names.get(action, action), actor.value))


CELLS = [
    pytest.param(row, action, actor, id=cell_id(row, action, actor))
    for row, actions in TABLE.items()
    for action in actions
    for actor in Actor
] + [
    pytest.param(row, PATCH_ACTION, actor, id=cell_id(row, "update_PATCH", actor))
    for row, actions in TABLE.items()
    if "update" in actions
    for actor in Actor
]


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgresql"])
async def permissions(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[PermissionWorld]:
    """The world on each backend (the conftest's `backend` is per test; this is per
    module, so the world is built once for all the cells)."""
    backend: str = request.param
    async with permission_world(tmp_path_factory.mktemp(f"permissions-{backend}"), backend) as w:
        yield w


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("row", "action", "actor"), CELLS)
async def test_cell(permissions: PermissionWorld, row: str, action: str, actor: Actor) -> None:
    if action == PATCH_ACTION:
        rule = TABLE[row]["update"].get(actor, Rule.NO)
        scenario = patched(SCENARIOS[(row, "update")])
    else:
        rule = TABLE[row][action].get(actor, Rule.NO)
        scenario = SCENARIOS[(row, action)]
    for caller in permissions.callers(actor):
        await check_caller(Ctx(permissions, caller, row, action, rule), scenario)


def test_every_row_has_a_scenario() -> None:
    rows = {(row, action) for row, actions in TABLE.items() for action in actions}
    assert rows == set(SCENARIOS)


def markdown_table() -> str:
    """The table as Markdown, for the README (a test keeps the two the same)."""
    actors = list(Actor)
    lines = [
        "| resource or route | action (update: PUT, PATCH) | "
        + " | ".join(a.value for a in actors)
        + " |",
        "| --- | --- | " + " | ".join("---" for _ in actors) + " |",
    ]
    for resource_type, actions in TABLE.items():
        for action, row in actions.items():
            values = [row.get(actor, Rule.NO).value for actor in actors]
            if resource_type == CONSENT_API:
                method, path = CONSENT_API_ROUTES[action]
                action = f"{method} /consent/v1{path}"
            lines.append(f"| {resource_type} | {action} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def test_the_readme_has_the_table() -> None:
    """The README shows the permission table exactly as `markdown_table()` renders it."""
    text = README.read_text(encoding="utf-8")
    table = markdown_table()
    assert table in text, (
        "README.md does not contain the permission table as shared.access.permissions."
        "markdown_table() renders it; paste its output into the README:\n\n" + table
    )


ROUTE_INTERACTIONS = {
    ("GET", "/fhir/{type}"): "search",
    ("POST", "/fhir/{type}"): "create",
    ("PUT", "/fhir/{type}"): "update",
    ("POST", "/fhir/{type}/_search"): "search",
    ("GET", "/fhir/{type}/_history"): "history-type",
    ("POST", "/fhir/{type}/$validate"): "validate",
    ("GET", "/fhir/{type}/{id}"): "read",
    ("PUT", "/fhir/{type}/{id}"): "update",
    ("PATCH", "/fhir/{type}/{id}"): "patch",
    ("DELETE", "/fhir/{type}/{id}"): "delete",
    ("GET", "/fhir/{type}/{id}/_history"): "history-instance",
    ("GET", "/fhir/{type}/{id}/_history/{vid}"): "vread",
}
"""The gateway's FHIR REST routes and the interaction each one is (its table action is
`INTERACTION_ACTIONS`)."""
OPERATION_ROUTE = "/fhir/{type}/{id}/{operation}"
SERVER_ROUTES = {
    ("GET", "/fhir/metadata"): "GET /fhir/metadata",
    ("POST", "/fhir"): "POST /fhir (batch, transaction)",
    ("POST", "/fhir/"): "POST /fhir (batch, transaction)",
}
UNAUTHENTICATED = {"/healthz", "/readyz", OPENAPI_PATH}
"""Routes that take no caller and hold no data (health and readiness checks, the API's
OpenAPI document): no row."""


@pytest.mark.asyncio(loop_scope="module")
async def test_every_route_and_operation_has_a_row(permissions: PermissionWorld) -> None:
    """Every type the services register has read/search/create/update/delete rows, every
    operation they register a row (under its type, or the consent API), every route the
    gateway serves maps onto rows, and every row is something that is served."""
    gateway = permissions.stack.gateway.gateway
    assert gateway is not None
    await gateway.registry.refresh()
    defined = {
        resource_type: name
        for name, runtime in permissions.services.items()
        if runtime.fhir is not None
        for resource_type in runtime.fhir.definitions
    }
    assert dict(gateway.registry.owners) == defined
    missing: list[str] = []
    fhir_actions = ("read", "search", "create", "update", "delete")
    for resource_type in defined:
        missing += [
            f"{resource_type} {action}"
            for action in fhir_actions
            if action not in TABLE.get(resource_type, {})
        ]
    operations: set[str] = set()
    for name, runtime in permissions.services.items():
        assert runtime.fhir is not None
        definitions = runtime.fhir.definitions
        declared = {
            f"${operation}": resource_type
            for resource_type, definition in definitions.items()
            for operation, _ in definition.operations
        }
        for operation in runtime.fhir.operations:
            operations.add(operation)
            if not operation.startswith("$"):
                if operation not in TABLE[CONSENT_API] or operation not in CONSENT_API_ROUTES:
                    missing.append(f"{CONSENT_API} {operation} ({name})")
                continue
            owners = [declared[operation]] if operation in declared else list(definitions)
            if not any(operation in TABLE.get(owner, {}) for owner in owners):
                missing.append(f"{'/'.join(owners)} {operation} ({name})")
    seen: set[tuple[str, str]] = set()
    for route in create_app(gateway).router.routes():
        method = "GET" if route.method == "HEAD" else route.method
        path = route.resource.canonical if route.resource is not None else ""
        if path in UNAUTHENTICATED:
            continue
        seen.add((method, path))
        if path.startswith(PREFIX):
            if (method, path.removeprefix(PREFIX)) not in CONSENT_API_ROUTES.values():
                missing.append(f"route {method} {path}")
        elif (method, path) in SERVER_ROUTES:
            if SERVER_ROUTES[(method, path)] not in TABLE[SERVER]:
                missing.append(f"route {method} {path}")
        elif path == OPERATION_ROUTE:
            continue  # the operations, each checked above
        elif (method, path) in ROUTE_INTERACTIONS:
            action = INTERACTION_ACTIONS.get(ROUTE_INTERACTIONS[(method, path)])
            missing += [
                f"route {method} {path} on {resource_type}"
                for resource_type in defined
                if action not in TABLE.get(resource_type, {})
            ]
        else:
            missing.append(f"route {method} {path} (unknown to this test)")
    assert not missing, f"served without a row in the permission table: {missing}"
    expected = {*ROUTE_INTERACTIONS, *SERVER_ROUTES, ("POST", OPERATION_ROUTE)}
    expected |= {(method, PREFIX + path) for method, path in CONSENT_API_ROUTES.values()}
    assert expected <= seen, expected - seen
    # Conversely, every row is something that is served.
    for row, actions in TABLE.items():
        if row == SERVER:
            assert set(actions) == set(SERVER_ROUTES.values()), actions
        elif row == CONSENT_API:
            assert set(actions) == set(CONSENT_API_ROUTES) <= operations, actions
        elif row == "Provenance":  # served by the gateway itself, derived from its targets
            assert set(actions) == {"read", "search", "create", "update", "delete"}, actions
        else:
            assert row in defined, row
            extra = {a for a in actions if a.startswith("$")} - operations
            assert not extra, (row, extra)
