"""fhirpy, the async Python FHIR client an EPJ vendor is likely to pick, against the real
stack: saving (create and update), searching, paging with `fetch_all`, `count()` (which
sends `_count=0&_totalMethod=count`), deleting, resolving references, and a refused read
surfacing as fhirpy's own exception."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from fhirpy import AsyncFHIRClient
from fhirpy.base.exceptions import ForbiddenError, OperationOutcome, ResourceNotFound
from fhirpy.lib import AsyncFHIRResource

from shared.codes import ORGANISATION_KIND_SYSTEM
from shared.identifiers import FNR_SYSTEM, ORGNR_SYSTEM
from tests.careplan_world import CarePlanWorld, plan, with_reason
from tests.referral_world import (
    BUP,
    BUP2,
    BVT,
    GP,
    KINDS,
    KOMMUNE,
    SKOLE,
    Child,
    ReferralWorld,
    referral_bundle,
)
from tests.support import fodselsnummer


def client(world: ReferralWorld, orgnr: str, **headers: str) -> AsyncFHIRClient:
    """A fhirpy client of the organisation `orgnr`, with its bearer token and `headers` on
    every request."""
    return AsyncFHIRClient(
        world.stack.base, authorization=f"Bearer {world.token(orgnr)}", extra_headers=headers
    )


def at(resource: Any, *path: str | int) -> Any:
    """The value at `path` in a resource fhirpy returned."""
    for step in path:
        resource = resource[step]
    return resource


async def save_task(world: ReferralWorld, task: AsyncFHIRResource, by: str) -> AsyncFHIRResource:
    """Save a Task `by` an organisation. A referral's Task changes only with If-Match and
    fhirpy's save() takes no headers, so it goes through a client that sends the version
    read with every request."""
    version = at(task, "meta", "versionId")
    locked = client(world, by, **{"If-Match": f'W/"{version}"'})
    saved = locked.resource("Task", **{k: v for k, v in task.items() if k != "resourceType"})
    await saved.save()
    assert at(saved, "meta", "versionId") == str(int(version) + 1)
    return saved


async def test_fhirpy_searches_pages_and_counts_the_register(referrals: ReferralWorld) -> None:
    fhir = client(referrals, GP)
    organisations = fhir.resources("Organization")
    assert await organisations.count() == len(KINDS)
    everyone = await organisations.limit(3).fetch_all()  # three pages and a part
    numbers = [at(o, "identifier", 0, "value") for o in everyone]
    assert sorted(numbers) == sorted(KINDS)

    bups = organisations.search(type=f"{ORGANISATION_KIND_SYSTEM}|bup")
    assert await bups.count() == 2
    found = {o["id"] for o in await bups.fetch_all()}
    assert found == {referrals.organisations[BUP], referrals.organisations[BUP2]}

    school = await organisations.search(identifier=f"{ORGNR_SYSTEM}|{SKOLE}").get()
    assert school["id"] == referrals.organisations[SKOLE]
    assert at(school, "type", 0, "coding", 0, "code") == "skole"
    assert await organisations.search(name="ingen slik").fetch_all() == []


async def test_fhirpy_saves_updates_and_deletes_a_child(referrals: ReferralWorld) -> None:
    fhir = client(referrals, BVT)
    fnr = fodselsnummer(date.today() - timedelta(days=9 * 365), 760)
    child = fhir.resource(
        "Patient",
        identifier=[{"system": FNR_SYSTEM, "value": fnr}],
        name=[{"family": "Nordmann", "given": ["Ola"]}],
        generalPractitioner=[{"reference": f"Organization/{referrals.organisations[GP]}"}],
    )
    await child.save()  # POST
    assert child.id
    assert at(child, "meta", "versionId") == "1"

    child["name"] = [{"family": "Nordmann", "given": ["Ola", "Kristian"]}]
    await child.save()  # PUT
    assert at(child, "meta", "versionId") == "2"
    read = await fhir.resources("Patient").search(identifier=f"{FNR_SYSTEM}|{fnr}").get()
    assert read.id == child.id
    assert at(read, "name", 0, "given") == ["Ola", "Kristian"]

    # A part of the child (elements()) is tagged SUBSETTED: saving it back would drop the
    # rest, so it is refused and nothing changes.
    partial = await fhir.resources("Patient").search(_id=child.id).elements("name").get()
    partial["name"] = [{"family": "Hansen"}]
    with pytest.raises(OperationOutcome, match="SUBSETTED") as subset:
        await partial.save()
    assert subset.value.resource["issue"][0]["expression"] == ["Patient.meta.tag"]
    whole = await fhir.get("Patient", child.id)
    assert at(whole, "meta", "versionId") == "2"
    assert (
        at(whole, "generalPractitioner", 0, "reference")
        == f"Organization/{referrals.organisations[GP]}"
    )

    gp = await child["generalPractitioner"][0].to_resource()
    assert gp["resourceType"] == "Organization"
    assert at(gp, "identifier", 0, "value") == GP

    # A school has no relation to the child: it answers exactly as a child that is not there.
    school = client(referrals, SKOLE)
    with pytest.raises(ResourceNotFound) as hidden:
        await school.resources("Patient").search(_id=child.id).get()
    with pytest.raises(ResourceNotFound) as refused:
        await school.get("Patient", child.id)
    with pytest.raises(ResourceNotFound) as missing:
        await school.get("Patient", "no-such-child")
    assert str(refused.value).replace(child.id, "X") == str(missing.value).replace(
        "no-such-child", "X"
    )
    assert "No resources found" in str(hidden.value)
    # A school may create no child at all: fhirpy raises its own ForbiddenError for the 403.
    with pytest.raises(ForbiddenError, match="OperationOutcome"):
        await school.resource("Patient", name=[{"family": "Hansen"}]).save()

    await fhir.delete(child)
    with pytest.raises(ResourceNotFound):  # 410 Gone
        await fhir.get("Patient", child.id)


async def submit(world: ReferralWorld, child: Child) -> dict[str, Any]:
    """The GP submits a referral to BUP as a transaction through fhirpy; the response."""
    response: dict[str, Any] = await client(world, GP).execute(
        "", method="post", data=referral_bundle(child, by=GP, to=BUP)
    )
    return response


async def test_fhirpy_follows_a_referral_from_task_to_request(referrals: ReferralWorld) -> None:
    child = await referrals.child()
    response = await submit(referrals, child)
    assert response["type"] == "transaction-response"
    service_request = response["entry"][-1]["resource"]
    bup = client(referrals, BUP)
    tasks = bup.resources("Task").search(focus=f"ServiceRequest/{service_request['id']}")
    assert await tasks.count() == 1
    task = await tasks.get()
    assert task["status"] == "requested"
    # elements() asks for `resourceType` and `id` besides the ones named.
    (subset,) = await tasks.elements("status", "focus").fetch_all()
    assert set(subset) == {"resourceType", "id", "meta", "status", "focus", "intent"}
    assert at(subset, "meta", "tag", 0, "code") == "SUBSETTED"
    request = await task["focus"].to_resource()
    assert request["id"] == service_request["id"]
    assert at(request, "subject", "reference") == f"Patient/{child.id}"
    assert await bup.resources("ServiceRequest").search(patient=child.id).count() == 1

    # The businessStatus is the server's: a client that leaves it out moves the Task.
    task["status"] = "received"
    del task["businessStatus"]
    moved = await save_task(referrals, task, by=BUP)
    assert moved["status"] == "received"
    assert at(moved, "businessStatus", "coding", 0, "code") == "mottatt"

    # The school is named by no one: the referral is not there for it.
    school = client(referrals, SKOLE)
    assert await school.resources("Task").search(focus=service_request["id"]).count() == 0
    with pytest.raises(ResourceNotFound):
        await school.get("Task", task.id)


async def test_fhirpy_moves_a_task_by_saving_what_it_read(referrals: ReferralWorld) -> None:
    """A naive client saves the Task as it read it, with the server's businessStatus
    unchanged: the server keeps that value its own and moves the Task."""
    child = await referrals.child()
    response = await submit(referrals, child)
    service_request = response["entry"][-1]["resource"]
    bup = client(referrals, BUP)
    task = await bup.resources("Task").search(focus=f"ServiceRequest/{service_request['id']}").get()
    assert at(task, "businessStatus", "coding", 0, "code") == "sendt"
    task["status"] = "received"
    moved = await save_task(referrals, task, by=BUP)
    assert moved["status"] == "received"
    assert at(moved, "businessStatus", "coding", 0, "code") == "mottatt"


async def test_fhirpy_writes_a_care_plan_that_cannot_be_deleted(careplans: CarePlanWorld) -> None:
    world = careplans.world
    child = await world.child(age=14)
    await careplans.consent(child, "ansvarsgruppe", BUP, ("careteam",), by=KOMMUNE)
    kommune = client(world, KOMMUNE)
    body = {k: v for k, v in plan(child, complete=False).items() if k != "resourceType"}
    draft = kommune.resource("CarePlan", **body)
    await draft.save()
    assert draft["status"] == "draft"
    draft["title"] = "Plan for skole og fritid"
    draft["extension"] = with_reason(draft, "Tittel på planen")["extension"]
    await draft.save()
    assert at(draft, "meta", "versionId") == "2"
    assert await kommune.resources("CarePlan").search(patient=child.id).count() == 1
    assert await client(world, BUP).resources("CarePlan").search(patient=child.id).count() == 0
    with pytest.raises(OperationOutcome) as kept:  # a plan's record is kept: 405
        await kommune.delete(draft)
    assert kept.value.resource["issue"][0]["severity"] == "error"


async def test_fhirpy_conditional_create_needs_if_none_exist(referrals: ReferralWorld) -> None:
    """fhirpy's `create(**criteria)` and `get_or_create` send the criteria in the query of
    the POST. A create refuses query parameters rather than dropping them, so they cannot
    create a duplicate child; the criteria go in If-None-Exist."""
    fnr = fodselsnummer(date.today() - timedelta(days=6 * 365), 800)
    criteria = f"{FNR_SYSTEM}|{fnr}"
    fhir = client(referrals, BVT)
    patients = fhir.resources("Patient").search(identifier=criteria)

    def child(fhir: AsyncFHIRClient) -> AsyncFHIRResource:
        return fhir.resource(
            "Patient",
            identifier=[{"system": FNR_SYSTEM, "value": fnr}],
            name=[{"family": "Nordmann", "given": ["Nora"]}],
        )

    with pytest.raises(OperationOutcome, match="If-None-Exist") as refused:
        await child(fhir).create(identifier=criteria)
    assert refused.value.resource["issue"][0]["code"] == "not-supported"
    with pytest.raises(OperationOutcome, match="If-None-Exist"):
        await patients.get_or_create(child(fhir))
    assert await patients.fetch_all() == []

    conditional = client(referrals, BVT, **{"If-None-Exist": f"identifier={criteria}"})
    first = await child(conditional).save()
    again = await child(conditional).save()
    assert again.id == first.id
    assert [p.id for p in await patients.fetch_all()] == [first.id]


async def test_fhirpy_updates_by_identifier_and_cannot_merge_patch(
    referrals: ReferralWorld,
) -> None:
    """fhirpy's `search(identifier=…).update(resource)` is a conditional update: the first
    creates, the next updates the one match. Its `patch()` sends a partial resource as
    plain JSON (a merge patch), which is not a JSON Patch: refused, nothing written."""
    fhir = client(referrals, GP)
    hpr = {"system": "urn:oid:2.16.578.1.12.4.1.4.4", "value": "9144889"}
    doctors = fhir.resources("Practitioner").search(identifier=f"{hpr['system']}|{hpr['value']}")

    def doctor(*given: str) -> AsyncFHIRResource:
        return fhir.resource(
            "Practitioner", identifier=[hpr], name=[{"family": "Lege", "given": list(given)}]
        )

    first, created = await doctors.update(doctor("Liv"))
    assert created
    second, created = await doctors.update(doctor("Liv", "Marie"))
    assert not created
    assert second.id == first.id
    assert at(second, "meta", "versionId") == "2"
    assert at(second, "name", 0, "given") == ["Liv", "Marie"]
    assert await doctors.count() == 1

    with pytest.raises(OperationOutcome) as refused:
        await fhir.patch("Practitioner", first.id, gender="female")
    assert "application/json-patch+json" in str(refused.value)
    assert "gender" not in await fhir.get("Practitioner", first.id)
