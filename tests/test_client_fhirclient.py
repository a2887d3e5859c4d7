"""fhirclient, SMART on FHIR's Python client with its R4 models, against the real stack:
read, search across pages, create and update with its models, a referral's transaction
and Task, and refusals surfacing as its own exceptions. The client is synchronous (it uses
requests), so each step runs in a thread; its models parse every resource strictly, so
whatever barnebro returns must be valid R4 as the models know it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import date, timedelta
from functools import partial
from typing import Any, TypeVar

import pytest
from fhirclient.models.bundle import Bundle
from fhirclient.models.capabilitystatement import CapabilityStatement
from fhirclient.models.careplan import CarePlan
from fhirclient.models.consent import Consent
from fhirclient.models.fhirelementfactory import FHIRElementFactory
from fhirclient.models.organization import Organization
from fhirclient.models.patient import Patient
from fhirclient.models.practitioner import Practitioner
from fhirclient.models.provenance import Provenance
from fhirclient.models.relatedperson import RelatedPerson
from fhirclient.models.servicerequest import ServiceRequest
from fhirclient.models.task import Task
from fhirclient.server import (
    FHIRNotFoundException,
    FHIRPermissionDeniedException,
    FHIRServer,
)
from requests import HTTPError

from shared.codes import ORGANISATION_KIND_SYSTEM
from shared.identifiers import FNR_SYSTEM, ORGNR_SYSTEM
from tests.careplan_world import CarePlanWorld, goal, member, person, plan, team
from tests.referral_world import (
    BUP,
    BUP2,
    BVT,
    GP,
    KINDS,
    KOMMUNE,
    SKOLE,
    ReferralWorld,
    referral_bundle,
)
from tests.support import fodselsnummer

T = TypeVar("T")


def server(world: ReferralWorld, orgnr: str) -> FHIRServer:
    """A fhirclient server of the organisation `orgnr`: its bearer token is a header of the
    client's requests session, as fhirclient lets a backend service set it."""
    fhir = FHIRServer(None, base_uri=world.stack.base)
    fhir.session.headers["Authorization"] = f"Bearer {world.token(orgnr)}"
    return fhir


async def run(step: Callable[[], T]) -> T:
    """Run a step of the synchronous client off the event loop that serves the stack."""
    return await asyncio.to_thread(step)


def search(model: Any, fhir: FHIRServer, **params: str) -> list[Any]:
    """Every match of a search, following the `next` links page by page."""
    return list(model.where(struct=params).perform_resources_iter(fhir))


def parsed(fhir: FHIRServer, path: str, lenient: bool = False) -> Any:
    """The answer to GET `path`, whatever its status, as fhirclient's strict R4 model."""
    headers = {"Accept": "application/fhir+json"}
    if lenient:
        headers["Prefer"] = "handling=lenient"
    answer = fhir.session.get(f"{fhir.base_uri}{path}", headers=headers).json()
    return FHIRElementFactory.instantiate(answer["resourceType"], answer)


def orgnr(organization: Organization) -> str:
    return str(next(i.value for i in organization.identifier if i.system == ORGNR_SYSTEM))


async def test_fhirclient_reads_and_searches_the_register(referrals: ReferralWorld) -> None:
    fhir = server(referrals, GP)
    capability = await run(lambda: CapabilityStatement.read_from("metadata", fhir))
    assert capability.fhirVersion.startswith("4.")
    assert "Organization" in {r.type for r in capability.rest[0].resource}
    school = await run(lambda: Organization.read(referrals.organisations[SKOLE], fhir))
    assert orgnr(school) == SKOLE
    assert school.type[0].coding[0].code == "skole"

    everyone = await run(lambda: search(Organization, fhir, _count="3"))
    assert sorted(orgnr(o) for o in everyone) == sorted(KINDS)
    pages = await run(lambda: list(Organization.where({"_count": "3"}).perform_iter(fhir)))
    assert len(pages) == 3
    assert all(page.total is None or page.total == len(KINDS) for page in pages)

    bups = await run(lambda: search(Organization, fhir, type=f"{ORGANISATION_KIND_SYSTEM}|bup"))
    assert {o.id for o in bups} == {referrals.organisations[BUP], referrals.organisations[BUP2]}
    with pytest.raises(FHIRNotFoundException):
        await run(lambda: Organization.read("no-such-organisation", fhir))


async def test_fhirclient_creates_reads_and_updates_a_child(referrals: ReferralWorld) -> None:
    fhir = server(referrals, BVT)
    fnr = fodselsnummer(date.today() - timedelta(days=7 * 365), 780)
    child = Patient(
        {
            "resourceType": "Patient",
            "identifier": [{"system": FNR_SYSTEM, "value": fnr}],
            "name": [{"family": "Nordmann", "given": ["Kari"]}],
            "generalPractitioner": [{"reference": f"Organization/{referrals.organisations[GP]}"}],
        }
    )
    created = Patient(await run(lambda: child.create(fhir)))
    assert created.id
    assert created.meta.versionId == "1"

    read = await run(lambda: Patient.read(created.id, fhir))
    assert read.identifier[0].value == fnr
    read.name[0].given = ["Kari", "Elise"]
    updated = Patient(await run(lambda: read.update(fhir)))
    assert updated.meta.versionId == "2"
    assert updated.name[0].given == ["Kari", "Elise"]
    found = await run(lambda: search(Patient, fhir, identifier=f"{FNR_SYSTEM}|{fnr}"))
    assert [p.id for p in found] == [created.id]
    history = f"Patient/{created.id}/_history"
    versions = await run(lambda: Bundle.read_from(history, fhir))
    assert [e.resource.meta.versionId for e in versions.entry] == ["2", "1"]
    assert [(link.relation, link.url) for link in versions.link] == [
        ("self", f"{referrals.stack.base}/{history}")
    ]

    # The school has no relation to the child: fhirclient sees no child, and may create none.
    school = server(referrals, SKOLE)
    with pytest.raises(FHIRNotFoundException) as hidden:
        await run(lambda: Patient.read(created.id, school))
    with pytest.raises(FHIRNotFoundException) as missing:
        await run(lambda: Patient.read("no-such-child", school))
    assert hidden.value.response.json()["issue"] == [
        {**issue, "diagnostics": issue["diagnostics"].replace("no-such-child", created.id)}
        for issue in missing.value.response.json()["issue"]
    ]
    assert await run(lambda: search(Patient, school, _id=created.id)) == []
    stranger = Patient({"resourceType": "Patient", "name": [{"family": "Hansen"}]})
    with pytest.raises(FHIRPermissionDeniedException) as refused:
        await run(lambda: stranger.create(school))
    assert refused.value.response.json()["resourceType"] == "OperationOutcome"


async def test_fhirclient_submits_a_referral_and_moves_its_task(referrals: ReferralWorld) -> None:
    child = await referrals.child()
    gp = server(referrals, GP)
    transaction = Bundle(referral_bundle(child, by=GP, to=BUP))
    response = Bundle(await run(lambda: transaction.create(gp)))
    assert response.type == "transaction-response"
    assert all(e.response.status.startswith("201") for e in response.entry)
    request = response.entry[-1].resource
    assert isinstance(request, ServiceRequest)

    bup = server(referrals, BUP)
    tasks = await run(lambda: search(Task, bup, focus=f"ServiceRequest/{request.id}"))
    assert len(tasks) == 1
    task = tasks[0]
    assert task.status == "requested"
    focus = await run(lambda: ServiceRequest.read_from(task.focus.reference, bup))
    assert focus.subject.reference == f"Patient/{child.id}"
    statements = await run(lambda: search(Provenance, bup, target=f"ServiceRequest/{request.id}"))
    assert statements, "the referral's reason is a statement of the GP's"
    assert all(isinstance(p, Provenance) for p in statements)
    assert statements[0].agent[0].who.identifier.value == GP

    # A Task changes only with If-Match; fhirclient's update() takes no headers, so the
    # version goes on the session for the one request. businessStatus is the server's.
    task.status = "received"
    task.businessStatus = None
    bup.session.headers["If-Match"] = f'W/"{task.meta.versionId}"'
    moved = Task(await run(lambda: task.update(bup)))
    del bup.session.headers["If-Match"]
    assert moved.status == "received"
    assert moved.businessStatus.coding[0].code == "mottatt"

    school = server(referrals, SKOLE)
    with pytest.raises(FHIRNotFoundException):
        await run(lambda: Task.read(task.id, school))
    with pytest.raises(FHIRNotFoundException):
        await run(lambda: ServiceRequest.read(request.id, school))


async def test_fhirclient_writes_a_draft_care_plan(careplans: CarePlanWorld) -> None:
    world = careplans.world
    child = await world.child(age=13)
    consent = await careplans.consent(child, "ansvarsgruppe", BUP, ("careteam",), by=KOMMUNE)
    kommune = server(world, KOMMUNE)
    recorded = await run(lambda: Consent.read_from(consent, kommune))
    assert recorded.status == "active"
    parents = await run(lambda: search(RelatedPerson, kommune, patient=child.id))
    assert sorted(f"RelatedPerson/{p.id}" for p in parents) == sorted(child.parents)
    draft = CarePlan(plan(child, complete=False))
    created = CarePlan(await run(lambda: draft.create(kommune)))
    assert created.status == "draft"
    assert created.subject.reference == f"Patient/{child.id}"
    found = await run(lambda: search(CarePlan, kommune, patient=child.id))
    assert [p.id for p in found] == [created.id]
    statements = await run(lambda: search(Provenance, kommune, target=f"CarePlan/{created.id}"))
    assert all(isinstance(p, Provenance) for p in statements)
    assert await run(lambda: search(CarePlan, server(world, BUP), patient=child.id)) == []
    with pytest.raises(HTTPError) as kept:  # a plan's record is kept: 405
        await run(lambda: created.delete(kommune))
    assert kept.value.response is not None
    assert kept.value.response.status_code == 405


async def test_fhirclient_cannot_write_back_a_subset(referrals: ReferralWorld) -> None:
    """A resource read with `_elements` is tagged SUBSETTED; updated and sent back, it would
    drop everything it left out, so the update is refused and the whole stays."""
    fhir = server(referrals, GP)
    doctor = Practitioner(
        {
            "resourceType": "Practitioner",
            "name": [{"family": "Lege", "given": ["Liv"]}],
            "telecom": [{"system": "phone", "value": "22334455"}],
            "gender": "female",
        }
    )
    created = Practitioner(await run(lambda: doctor.create(fhir)))
    (partial,) = await run(lambda: search(Practitioner, fhir, _id=created.id, _elements="name"))
    assert partial.telecom is None
    assert [t.code for t in partial.meta.tag] == ["SUBSETTED"]
    partial.name[0].given = ["Liv", "Marie"]
    with pytest.raises(HTTPError) as refused:
        await run(lambda: partial.update(fhir))
    assert refused.value.response is not None
    assert refused.value.response.status_code == 422
    assert "SUBSETTED" in refused.value.response.json()["issue"][0]["diagnostics"]
    whole = await run(lambda: Practitioner.read(created.id, fhir))
    assert whole.meta.versionId == "1"
    assert whole.meta.tag is None
    assert whole.telecom[0].value == "22334455"
    assert whole.gender == "female"


async def test_fhirclient_models_parse_every_kind_of_answer(careplans: CarePlanWorld) -> None:
    """The strict R4 models take every kind of answer a care team's members read: resources
    with the project's extensions, searchsets with includes and an outcome entry, histories,
    derived Provenance, the CapabilityStatement, CodeSystems, and refusals' outcomes."""
    world = careplans.world
    child = await world.child(age=15)
    ordered = await world.child(age=10, care_order=True)
    await careplans.consent(child, "ansvarsgruppe", BUP, ("careteam",), by=KOMMUNE)
    await careplans.consent(child, "individuell-plan", BUP, ("individuell-plan", "careteam"), by=GP)
    goal_ref = await careplans.created(goal(child), by=KOMMUNE)
    members = (member(KOMMUNE, "koordinator"), member(BUP, "behandler"),
               person(f"Patient/{child.id}", "pasient"))  # fmt: skip
    team_ref = await careplans.created(team(child, *members), by=KOMMUNE)
    active = plan(child, status="active", goals=(goal_ref,), care_team=team_ref)
    plan_ref = await careplans.created(active, by=KOMMUNE)
    referral = await world.submit(child)
    await world.accept(referral)
    paths = (
        plan_ref, goal_ref, team_ref, f"{plan_ref}/_history", f"Provenance?target={plan_ref}",
        f"CarePlan?patient={child.id}&_revinclude=Provenance:target&_include=CarePlan:care-team",
        f"Patient/{child.id}", f"Patient/{child.id}/_history", f"RelatedPerson?patient={child.id}",
        f"Task/{referral.task_id}", f"Task/{referral.task_id}/_history", referral.ref,
        f"ServiceRequest?patient={child.id}&_include=ServiceRequest:supporting-info",
        f"Task?focus={referral.ref}&_include=Task:focus", f"Consent?patient={child.id}",
        "metadata", "CodeSystem", "Organization?_elements=name", "Organization/_history",
        "Patient/no-such-child", "NoSuchType",
    )  # fmt: skip
    kinds: set[str] = set()
    for orgnr_, more in ((BUP, ()), (KOMMUNE, ()), (BVT, (f"Patient/{ordered.id}",))):
        fhir = server(world, orgnr_)
        for path in (*paths, *more):
            answer = await run(partial(parsed, fhir, path))
            kinds.add(answer.resource_type)
            for entry in getattr(answer, "entry", None) or []:
                kinds.add(entry.resource.resource_type)
        lenient = await run(partial(parsed, fhir, "Organization?unknown=1", lenient=True))
        assert lenient.entry[-1].search.mode == "outcome"
    assert kinds >= {
        "CarePlan", "Goal", "CareTeam", "Provenance", "Patient", "RelatedPerson", "Task",
        "ServiceRequest", "DocumentReference", "Consent", "CapabilityStatement", "CodeSystem",
        "Organization", "Bundle", "OperationOutcome",
    }  # fmt: skip
