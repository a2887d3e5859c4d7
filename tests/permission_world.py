"""The world the permission table is tested in (`tests/test_permission_table.py`).

One stack with every service (gateway, directory, consent, referral, care plan,
subscriptions) on real NATS and a database, built once per backend and shared by every
cell of the table, so each cell costs only its own requests.

Who is in it:
- one organisation of every kind (`ACTORS`), each the caller of its kind's cells;
- `OUTSIDER`, a BUP that is never a caller: it registers every child and writes every
  record the callers did not write themselves, and `RECEIVER`, the kommune-helse its
  referrals go to; `SPARE`, an organisation the operator's cells change.

The children:
- `related` (A): every caller has a relation to it and sees its information, by one
  active consent naming every caller for every data category the records here hold; its
  mother is the person caller;
- `unrelated` (B): the same records, but nobody except the outsider (and the receiver of
  its referral) has any basis for them: no caller may learn it exists;
- `fresh` (C, the callers take it into their care and record a consent for it),
  `ordered` (D, a care order is stated for it), `family` (E, its parents are registered
  and removed) and `emergency` (F, read in an emergency), each used by one row only, so
  the rows do not disturb each other; and a new child (`child`) wherever a request would
  give a caller a relation it must not have elsewhere (`$start-care`).
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from services.careplan import careplan_spec
from services.referral import referral_spec
from services.referral.domain.vocabulary import ATTACHMENT_SYSTEM
from services.subscriptions import subscriptions_spec
from shared.access.permissions import ACTOR_KINDS, Actor
from shared.identifiers import FNR_SYSTEM, ORGNR_SYSTEM
from shared.runtime import ServiceRuntime
from tests.careplan_world import goal, member, plan, team
from tests.referral_world import Child, org_reference, referral_bundle
from tests.subscription_world import Partner, subscription, subscription_settings
from tests.support import (
    Reply,
    Stack,
    drop_test_resources,
    fodselsnummer,
    nats_url,
    organisation,
    parent,
    start_stack,
    stop_stack,
    wait_for,
)
from tests.support import test_settings as make_settings

SCOPES = "system/*.cruds system/AuditEvent.cruds"
"""What every organisation's token asks for: everything, the audit trail included, so
that a refusal is the permission table's and never the token's."""
MARKER_SYSTEM = "urn:barnebro:permission-table-test"
_WEIGHTS = (3, 2, 7, 6, 5, 4, 3, 2)


def orgnr(seed: int) -> str:
    """A valid organisasjonsnummer (mod 11 check digit) made from `seed`."""
    for candidate in itertools.count(920_000_00 + seed * 7):
        digits = f"{candidate:08d}"
        check = 11 - sum(w * int(d) for w, d in zip(_WEIGHTS, digits, strict=True)) % 11
        if check == 11:
            return digits + "0"
        if check != 10:
            return digits + str(check)
    raise AssertionError("unreachable")


KINDS = sorted(kind for kinds in ACTOR_KINDS.values() for kind in kinds)
ACTORS = {kind: orgnr(index) for index, kind in enumerate(KINDS)}
"""kind → organisasjonsnummer of the one organisation of that kind that calls."""
OUTSIDER, RECEIVER, SPARE = orgnr(40), orgnr(41), orgnr(42)
OTHERS = {OUTSIDER: "bup", RECEIVER: "kommune-helse", SPARE: "skole"}
PERSON_LOGIN = ACTORS["skole"]
"""The organisation a person logs in through (it lends the person nothing)."""
BARNEVERNSTJENESTE = ACTORS["barnevernstjeneste"]
CATEGORIES = ("referral", "careplan", "individuell-plan", "careteam", "consent")


class Mark(NamedTuple):
    """Where a service's history and outbox stood before a request."""

    history: int
    outbox: int


def marker() -> str:
    """A text no other request writes, to recognise what a request stored."""
    return f"mark-{uuid.uuid4().hex[:12]}"


def made_up() -> str:
    """An id nothing has."""
    return str(uuid.uuid4())


@dataclass
class Records:
    """The records about one child: type → reference (`Type/id`)."""

    child: Child
    refs: dict[str, str] = field(default_factory=dict)

    def id(self, resource_type: str) -> str:
        return self.refs[resource_type].split("/", 1)[1]


@dataclass(frozen=True)
class Caller:
    """One caller of an actor column: an organisation of one kind, the person, or an
    operator credential."""

    actor: Actor
    token: str = field(repr=False)
    kind: str | None = None
    orgnr: str | None = None
    person: str | None = None

    @property
    def name(self) -> str:
        return self.kind or self.actor.value


@dataclass(repr=False)
class PermissionWorld:
    stack: Stack
    services: dict[str, ServiceRuntime]
    partner: Partner
    organisations: dict[str, str] = field(default_factory=dict)
    """organisasjonsnummer → Organization id."""
    related: Records = field(default_factory=lambda: Records(Child("", "")))
    unrelated: Records = field(default_factory=lambda: Records(Child("", "")))
    fresh: Child = field(default_factory=lambda: Child("", ""))
    ordered: Child = field(default_factory=lambda: Child("", ""))
    family: Child = field(default_factory=lambda: Child("", ""))
    outsiders: dict[str, str] = field(default_factory=dict)
    """The outsider's Practitioner, PractitionerRole and HealthcareService (type →
    reference): records every caller reads and none owns."""
    emergency_event: str = ""
    """An emergency access awaiting the operator's review (AuditEvent id)."""
    outsider_event: str = ""
    """An AuditEvent of the outsider's own access (AuditEvent id)."""
    outsider_subscription: str = ""
    proposed: str = ""
    """A consent about the related child the outsider collected, still proposed (id)."""
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(100))
    _audited: set[str] = field(default_factory=set)
    _subscriptions: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"PermissionWorld({self.stack.settings.database_url or 'sqlite'})"

    # -- callers ---------------------------------------------------------------------------

    def callers(self, actor: Actor) -> list[Caller]:
        """Every caller of an actor column: one organisation of each of its kinds."""
        if actor is Actor.PERSON:
            person = self.related.child.parents[0]
            token = self.stack.token(
                orgnr=PERSON_LOGIN, kind="skole", scope=SCOPES, fhir_user=person
            )
            return [Caller(actor, token, person=person)]
        if actor is Actor.OPERATOR:
            return [Caller(actor, self.stack.operator_token())]
        if actor is Actor.REGISTER:
            return [Caller(actor, self.stack.register_token())]
        return [
            Caller(actor, self.org_token(ACTORS[kind]), kind, ACTORS[kind])
            for kind in sorted(ACTOR_KINDS[actor])
        ]

    def org_token(self, number: str, hpr: str | None = None) -> str:
        kind = ACTORS_BY_NUMBER.get(number) or OTHERS[number]
        return self.stack.token(orgnr=number, kind=kind, scope=SCOPES, hpr=hpr)

    @property
    def outsider(self) -> str:
        return self.org_token(OUTSIDER)

    # -- requests --------------------------------------------------------------------------

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.stack.settings.http_port}/consent/v1"

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        return await self.stack.call(method, path, body, token=token, headers=headers)

    async def created(self, path: str, body: Any, token: str, status: int = 201) -> dict[str, Any]:
        reply = await self.call("POST", path, body, token=token)
        assert reply.status == status, (path, reply.status, reply.body)
        found: dict[str, Any] = reply.json()
        return found

    async def current(self, reference: str, token: str | None = None) -> dict[str, Any]:
        """A resource as `token` (by default its writer, the outsider) reads it."""
        reply = await self.call("GET", reference, token=token or self.outsider)
        assert reply.status == 200, (reference, reply.body)
        found: dict[str, Any] = reply.json()
        return found

    # -- builders --------------------------------------------------------------------------

    def new_orgnr(self) -> str:
        return orgnr(1000 + next(self._numbers))

    def new_fnr(self) -> str:
        number = next(self._numbers)
        born = date.today().replace(year=date.today().year - 11) - timedelta(days=40 + number)
        return fodselsnummer(born, 500 + (number * 7) % 400)

    def patient(self, fnr: str, family: str) -> dict[str, Any]:
        return {
            "resourceType": "Patient",
            "identifier": [{"system": FNR_SYSTEM, "value": fnr}],
            "name": [{"family": family, "given": ["Kari"]}],
        }

    async def child(self, family: str, *, parents: bool = True) -> Child:
        """A child the outsider registers, with two parents holding parental
        responsibility."""
        fnr = self.new_fnr()
        created = await self.created("Patient", self.patient(fnr, family), self.outsider)
        found = []
        for given in ("Mor", "Far") if parents else ():
            person = await self.created(
                "RelatedPerson", parent(created["id"], given), self.stack.register_token()
            )
            found.append(f"RelatedPerson/{person['id']}")
        return Child(str(created["id"]), fnr, tuple(found))

    def consent_body(
        self,
        child: Child,
        *,
        purpose: str = "helsehjelp",
        grantors: tuple[str, ...] | None = None,
        recipients: list[str] | None = None,
        categories: tuple[str, ...] = ("journal",),
        collected_by: str = "Lege Li",
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "patient": f"Patient/{child.id}",
            "purpose": purpose,
            "categories": list(categories),
            "signatures": [
                {"grantor": g, "decision": "consent", "method": "in-person",
                 "collected_by": collected_by}
                for g in (child.parents if grantors is None else grantors)
            ],
            "child_view": {"heard": True, "statement": "Greit", "heard_by": "Lege Li"},
        }  # fmt: skip
        if recipients is not None:
            body["recipients"] = {"organizations": recipients}
        return body

    async def consent(self, body: dict[str, Any], token: str, status: str) -> str:
        """Record a consent through the administration API; its id."""
        reply = await self.call("POST", f"{self.admin}/consents", body, token=token)
        assert reply.status == 201, reply.body
        assert reply.json()["status"] == status, reply.body
        return str(reply.json()["id"])

    def referral(self, child: Child, by: str, text: str) -> dict[str, Any]:
        return {
            "resourceType": "ServiceRequest",
            "status": "active",
            "intent": "order",
            "priority": "routine",
            "subject": {"identifier": {"system": FNR_SYSTEM, "value": child.fnr}},
            "requester": org_reference(by),
            "performer": [org_reference(RECEIVER)],
            "reasonCode": [{"text": text}],
        }

    def attachment(self, child: Child, text: str) -> dict[str, Any]:
        return {
            "resourceType": "DocumentReference",
            "status": "current",
            "type": {"coding": [{"system": ATTACHMENT_SYSTEM, "code": "annet"}]},
            "subject": {"identifier": {"system": FNR_SYSTEM, "value": child.fnr}},
            "description": text,
            "content": [{"attachment": {"contentType": "text/plain", "data": "dGVrc3Q="}}],
        }

    def plan(self, child: Child, text: str) -> dict[str, Any]:
        return {**plan(child, "behandlingsplan", complete=False), "description": text}

    def goal(self, child: Child, text: str) -> dict[str, Any]:
        return goal(child, text)

    def team(self, child: Child, text: str, by: str) -> dict[str, Any]:
        return {**team(child, member(by, "behandler")), "name": text}

    def subscription(self, text: str, topic: str = "referral-status") -> dict[str, Any]:
        return {**subscription(topic, endpoint=self.partner.url), "reason": text}

    async def own_subscription(self, caller: Caller) -> str:
        """A subscription the caller made (one per caller, made when first needed)."""
        assert caller.orgnr is not None
        if caller.orgnr not in self._subscriptions:
            made = await self.created("Subscription", self.subscription(marker()), caller.token)
            self._subscriptions[caller.orgnr] = str(made["id"])
        return self._subscriptions[caller.orgnr]

    async def audited(self, caller: Caller) -> None:
        """Wait until the audit trail holds a record of the caller's own access."""
        assert caller.orgnr is not None
        if caller.orgnr in self._audited:
            return
        reply = await self.call("GET", f"Patient/{self.related.child.id}", token=caller.token)
        assert reply.status == 200, reply.body
        await self.events_of(caller.orgnr)
        self._audited.add(caller.orgnr)

    async def events_of(self, number: str, query: str = "") -> list[str]:
        """The AuditEvents of an organisation's accesses, as the operator finds them
        (waiting for the first)."""
        found: list[str] = []

        async def recorded() -> bool:
            reply = await self.call(
                "GET",
                f"AuditEvent?agent={ORGNR_SYSTEM}|{number}{query}",
                token=self.stack.operator_token(),
            )
            assert reply.status == 200, reply.body
            found[:] = [e["resource"]["id"] for e in reply.json().get("entry", [])]
            return bool(found)

        await wait_for(recorded, 15)
        return found

    # -- what a refused request must not have written --------------------------------------

    async def mark(self, service: str) -> Mark:
        """The newest version any resource of `service` has and the newest event it
        recorded (the sequences of its history and of its outbox)."""
        db = self.services[service].db
        assert db is not None
        async with db.reader() as conn:
            history = await conn.fetchrow("SELECT MAX(seq) FROM resource_history")
            outbox = await conn.fetchrow("SELECT MAX(seq) FROM outbox")
        return Mark(int(history[0] or 0) if history else 0, int(outbox[0] or 0) if outbox else 0)

    async def written_since(
        self,
        service: str,
        since: Mark,
        res_type: str,
        res_id: str | None,
        text: str | None,
        event: str | None = None,
    ) -> list[str]:
        """Versions of `res_type` stored in `service` after `since` that are of `res_id`
        or hold `text`; and, for `event`, the events `<service>.<res_type>.<event>` about
        `res_id` it recorded after `since` (an operation that writes no resource)."""
        db = self.services[service].db
        assert db is not None
        async with db.reader() as conn:
            rows = await conn.fetch(
                "SELECT res_id, version, body FROM resource_history WHERE seq > ? AND res_type = ?",
                since.history,
                res_type,
            )
            events = (
                await conn.fetch("SELECT payload FROM outbox WHERE seq > ?", since.outbox)
                if event is not None
                else []
            )
        found = [
            f"{res_type}/{row[0]}/_history/{row[1]}"
            for row in rows
            if row[0] == res_id or (text is not None and text.encode() in bytes(row[2] or b""))
        ]
        for row in events:
            payload = json.loads(bytes(row[0]))
            if payload.get("type") == f"{service}.{res_type}.{event}" and (
                payload.get("resource_id") == res_id
            ):
                found.append(f"event {payload['type']} {payload.get('id')} of {res_id}")
        return found


ACTORS_BY_NUMBER = {number: kind for kind, number in ACTORS.items()}


async def _records(world: PermissionWorld, child: Child) -> Records:
    """The outsider's records about a child: a referral with an attachment (and its
    Task), a plan, a goal and a care team."""
    outsider = world.outsider
    records = Records(child)
    bundle = referral_bundle(child, by=OUTSIDER, to=RECEIVER, attachments=("annet",))
    reply = await world.call("POST", "", bundle, token=outsider)
    assert reply.status == 200, reply.body
    entries = reply.json()["entry"]
    records.refs["DocumentReference"] = f"DocumentReference/{entries[0]['resource']['id']}"
    records.refs["ServiceRequest"] = f"ServiceRequest/{entries[-1]['resource']['id']}"
    found = await world.call("GET", f"Task?focus={records.refs['ServiceRequest']}", token=outsider)
    tasks = [e["resource"]["id"] for e in found.json()["entry"]]
    assert len(tasks) == 1, found.body
    records.refs["Task"] = f"Task/{tasks[0]}"
    for resource in (
        world.plan(child, "Behandlingsplan"),
        world.goal(child, "Gå på skolen"),
        world.team(child, "Ansvarsgruppa", OUTSIDER),
    ):
        made = await world.created(resource["resourceType"], resource, outsider)
        records.refs[resource["resourceType"]] = f"{resource['resourceType']}/{made['id']}"
    return records


async def _everyone_sees(world: PermissionWorld, child: Child, consent: str) -> None:
    """Wait until every service's copy of the consent state has the consent."""
    for runtime in world.services.values():
        view = runtime.consent_view
        if view is None:
            continue

        async def granted(view: Any = view) -> bool:
            state = view.state(child.id)
            return state is not None and any(g.consent == consent for g in state.grants)

        await wait_for(granted, 15)


async def populate(world: PermissionWorld) -> None:
    stack = world.stack
    numbers = {**ACTORS_BY_NUMBER, **OTHERS}
    for number, kind in numbers.items():
        world.organisations[number] = await stack.admit_resource(
            organisation(kind, f"{kind} {number}", number, "0301")
        )
    outsider = world.outsider
    a = await world.child("Relatertsen")
    b = await world.child("Ukjentsen")
    world.fresh = await world.child("Ferskesen")
    world.ordered = await world.child("Omsorgsen", parents=False)
    world.family = await world.child("Familiesen")
    emergency = await world.child("Nødsen", parents=False)
    shared = world.consent_body(
        a,
        purpose="informasjonsdeling",
        recipients=sorted(ACTORS.values()),
        categories=CATEGORIES,
    )
    consent_a = await world.consent(shared, outsider, "active")
    await _everyone_sees(world, a, f"Consent/{consent_a}")
    consent_b = await world.consent(world.consent_body(b), outsider, "active")
    world.related = await _records(world, a)
    world.related.refs["Consent"] = f"Consent/{consent_a}"
    world.unrelated = await _records(world, b)
    world.unrelated.refs["Consent"] = f"Consent/{consent_b}"
    world.proposed = await world.consent(
        world.consent_body(a, grantors=a.parents[1:]), outsider, "proposed"
    )
    directory: list[dict[str, Any]] = [
        {"resourceType": "Practitioner", "name": [{"family": "Utenforsen"}]},
        {
            "resourceType": "PractitionerRole",
            "organization": {"reference": f"Organization/{world.organisations[OUTSIDER]}"},
        },
        {
            "resourceType": "HealthcareService",
            "name": "Utenfor-tjenesten",
            "providedBy": {"reference": f"Organization/{world.organisations[OUTSIDER]}"},
        },
    ]
    for resource in directory:
        made = await world.created(resource["resourceType"], resource, outsider)
        world.outsiders[resource["resourceType"]] = f"{resource['resourceType']}/{made['id']}"
    made = await world.created("Subscription", world.subscription("x", "careplan"), outsider)
    world.outsider_subscription = str(made["id"])

    async def handshaken() -> bool:
        reply = await world.call("GET", f"Subscription/{made['id']}", token=outsider)
        return bool(reply.json().get("status") == "active")

    await wait_for(handshaken, 15)  # the service writes no more versions of it after this
    # An emergency access by a health person of the receiver: to be reviewed.
    reply = await world.call(
        "GET",
        f"Patient/{emergency.id}",
        token=world.org_token(RECEIVER, hpr="1234567"),
        headers={
            "Barnebro-Emergency-Patient": f"Patient/{emergency.id}",
            "Barnebro-Emergency-Reason": "Bevisstløs på legevakten",
        },
    )
    assert reply.status == 200, reply.body
    world.emergency_event = (await world.events_of(RECEIVER, "&review=pending"))[0]
    world.outsider_event = (await world.events_of(OUTSIDER))[0]


@asynccontextmanager
async def permission_world(directory: Path, backend: str) -> AsyncIterator[PermissionWorld]:
    """The running world, populated; stopped and removed afterwards."""
    settings = make_settings(directory, backend, nats_url())
    stack = await start_stack(settings)
    started: list[ServiceRuntime] = []
    partner = Partner()
    try:
        await partner.start()
        runtimes = {
            "referral": ServiceRuntime(referral_spec(settings), settings),
            "careplan": ServiceRuntime(careplan_spec(settings), settings),
        }
        fast = subscription_settings(settings)
        runtimes["subscriptions"] = ServiceRuntime(subscriptions_spec(fast), fast)
        for runtime in runtimes.values():
            await runtime.start()
            started.append(runtime)
        world = PermissionWorld(
            stack,
            {"directory": stack.directory, "consent": stack.consent, **runtimes},
            partner,
        )
        await populate(world)
        yield world
    finally:
        for runtime in reversed(started):
            await runtime.stop()
        await partner.stop()
        await stop_stack(stack)
        await drop_test_resources(settings)


__all__ = [
    "ACTORS",
    "BARNEVERNSTJENESTE",
    "MARKER_SYSTEM",
    "OUTSIDER",
    "RECEIVER",
    "SPARE",
    "Caller",
    "Mark",
    "PermissionWorld",
    "Records",
    "made_up",
    "marker",
    "orgnr",
    "permission_world",
]
