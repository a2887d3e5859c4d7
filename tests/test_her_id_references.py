"""An organisation named by HER-id is the same organisation as by organisasjonsnummer,
everywhere one is named: found through the directory, held to the same rules (registered,
in use, of the right kind and type) and stored by organisasjonsnummer."""

from __future__ import annotations

from typing import Any

from services.operator.client import RegisterClient
from services.referral.domain.vocabulary import SHARED_WITH_EXT
from shared.codes import ROLE_SYSTEM
from shared.identifiers import HERID_SYSTEM, ORGNR_SYSTEM
from tests.careplan_world import CarePlanWorld, member, team
from tests.careplan_world import plan as plan_of
from tests.consent_world import World
from tests.referral_world import (
    BUP,
    BUP2,
    BVT,
    GP,
    KINDS,
    KOMMUNE,
    ReferralWorld,
    output,
    referral_bundle,
)

GP_HER, BUP_HER, BUP2_HER, KOMMUNE_HER = "8142501", "8142519", "8142527", "8142535"


def her(value: str, **more: Any) -> dict[str, Any]:
    return {"identifier": {"system": HERID_SYSTEM, "value": value}, **more}


def orgnr(value: str, **more: Any) -> dict[str, Any]:
    return {"identifier": {"system": ORGNR_SYSTEM, "value": value}, **more}


async def register(
    world: ReferralWorld, number: str, *her_ids: str, active: bool = True, **row: Any
) -> Any:
    """The operator imports the organisation again, with HER-ids (and `aktiv`)."""
    client = RegisterClient(world.stack.session, world.stack.base, world.stack.operator_token())
    row = {"organisasjonsnummer": number, "navn": f"{KINDS[number]} {number}",
           "kind": KINDS[number], "kommunenummer": "0301", "herId": list(her_ids),
           "aktiv": active, **row}  # fmt: skip
    return await client.import_organisations([row])


async def her_ids_of(world: ReferralWorld, number: str) -> list[str]:
    found = await world.stack.call(
        "GET", f"Organization?identifier={ORGNR_SYSTEM}|{number}",
        token=world.stack.operator_token(),
    )  # fmt: skip
    (organisation,) = [e["resource"] for e in found.json()["entry"]]
    return [i["value"] for i in organisation["identifier"] if i["system"] == HERID_SYSTEM]


async def submit_to(world: ReferralWorld, performer: dict[str, Any]) -> Any:
    child = await world.child()
    bundle = referral_bundle(child, by=GP, to=BUP)
    bundle["entry"][-1]["resource"]["performer"] = [performer]
    return await world.fhir("POST", "", bundle, by=GP)


async def name_gp(world: ReferralWorld, child_id: str, named: dict[str, Any]) -> Any:
    """The barnevernstjeneste names the child's GP on the child's record."""
    seen = await world.fhir("GET", f"Patient/{child_id}", by=BVT)
    assert seen.status == 200, seen.body
    return await world.fhir(
        "PUT",
        f"Patient/{child_id}",
        {**seen.json(), "generalPractitioner": [named]},
        by=BVT,
        headers={"If-Match": seen.headers["ETag"]},
    )


async def test_a_gp_named_by_her_id_is_checked_and_stored_by_orgnr(
    referrals: ReferralWorld,
) -> None:
    for number, her_id in ((GP, GP_HER), (BUP, BUP_HER)):
        report = await register(referrals, number, her_id)
        assert report.rows == [(number, "updated", "")], report.rows
    child = await referrals.child()
    refusals = {
        BUP_HER: "names a registered fastlege office",  # registered, but not a GP
        "999": "names a registered fastlege office",  # not registered
        "08142501": "without leading zeros",
        "0": "without leading zeros",
    }
    for her_id, message in refusals.items():
        reply = await name_gp(referrals, child.id, her(her_id))
        assert reply.status == 422, (her_id, reply.body)
        assert message in str(reply.body), reply.body

    reply = await name_gp(referrals, child.id, her(GP_HER, type="Patient"))
    assert reply.status == 422, reply.body
    assert "Patient.generalPractitioner[0].type" in str(reply.body)

    reply = await name_gp(referrals, child.id, her(GP_HER, display="Legekontoret"))
    assert reply.status == 200, reply.body
    stored = await referrals.stack.call("GET", f"Patient/{child.id}")
    assert stored.json()["generalPractitioner"] == [
        {"identifier": {"system": ORGNR_SYSTEM, "value": GP}, "display": "Legekontoret",
         "type": "Organization"}
    ]  # fmt: skip

    # An office the register has taken out of use is no longer named as a GP.
    await register(referrals, GP, GP_HER, active=False)
    for named in (her(GP_HER), orgnr(GP)):
        reply = await name_gp(referrals, child.id, named)
        assert reply.status == 422, reply.body
        assert "names a registered fastlege office in use" in str(reply.body)


async def test_a_referral_to_an_organisation_out_of_use_is_refused(
    referrals: ReferralWorld,
) -> None:
    await register(referrals, BUP2, BUP2_HER, active=False)
    for performer in (orgnr(BUP2), her(BUP2_HER)):
        reply = await submit_to(referrals, performer)
        assert reply.status == 422, reply.body
        assert f"The receiving organisation {BUP2} is not registered in the directory" in str(
            reply.body
        )
        assert "out of use" in str(reply.body)
    found = await referrals.fhir("GET", "ServiceRequest", by=GP)
    assert not [e for e in found.json().get("entry", []) if e["search"]["mode"] == "match"]


async def test_her_ids_have_one_spelling(referrals: ReferralWorld) -> None:
    await register(referrals, BUP, BUP_HER)
    for spelling in ("0" + BUP_HER, "000000000"):
        report = await register(referrals, BUP2, spelling)
        assert report.rows[0][1] == "failed", report.rows
        assert "without leading zeros" in report.rows[0][2]
        reply = await submit_to(referrals, her(spelling))
        assert reply.status == 422, reply.body
        assert "ServiceRequest.performer[0].identifier" in str(reply.body)
        assert "without leading zeros" in str(reply.body)


async def test_an_organisation_is_named_as_an_organization(referrals: ReferralWorld) -> None:
    await register(referrals, BUP, BUP_HER)
    for performer in (orgnr(BUP, type="Patient"), her(BUP_HER, type="Patient")):
        reply = await submit_to(referrals, performer)
        assert reply.status == 422, reply.body
        assert "ServiceRequest.performer[0].type" in str(reply.body)
    reply = await submit_to(referrals, orgnr(BUP, type="Organization"))
    assert reply.status == 200, reply.body


async def test_a_register_row_without_her_ids_keeps_the_stored_ones(
    referrals: ReferralWorld,
) -> None:
    await register(referrals, BUP, BUP_HER)
    client = RegisterClient(
        referrals.stack.session, referrals.stack.base, referrals.stack.operator_token()
    )
    renamed = {"organisasjonsnummer": BUP, "navn": "BUP Oslo", "kind": "bup",
               "kommunenummer": "0301"}  # fmt: skip
    report = await client.import_organisations([renamed])
    assert report.rows == [(BUP, "updated", "")], report.rows
    assert await her_ids_of(referrals, BUP) == [BUP_HER]
    # Still held: no other organisation may take it.
    report = await register(referrals, BUP2, BUP_HER)
    assert report.rows[0][:2] == (BUP2, "failed"), report.rows

    # An explicit empty value removes them, and frees them for another.
    report = await client.import_organisations([{**renamed, "herId": []}])
    assert report.rows == [(BUP, "updated", "")], report.rows
    assert await her_ids_of(referrals, BUP) == []
    report = await register(referrals, BUP2, BUP_HER)
    assert report.rows == [(BUP2, "updated", "")], report.rows


async def test_a_gp_and_a_follow_up_named_by_her_id_are_told_of_a_discharge(
    referrals: ReferralWorld,
) -> None:
    await register(referrals, GP, GP_HER)
    await register(referrals, KOMMUNE, KOMMUNE_HER)
    child = await referrals.child(gp=None, care_order=True)
    assert (await name_gp(referrals, child.id, her(GP_HER))).status == 200
    referral = await referrals.submit(child, by=BVT)
    assert (await referrals.accept(referral)).status == 200
    assert (await referrals.move(referral, "in-progress")).status == 200
    plan = output("oppfolgingsplan", {"valueString": "Kommunepsykolog hver 14. dag"})
    by_her = output("ansvarlig-oppfolging", {"valueReference": her(KOMMUNE_HER)})
    reply = await referrals.move(referral, "completed", output=[plan, by_her])
    assert reply.status == 200, reply.body
    task = reply.json()
    assert task["output"][1]["valueReference"] == {
        "identifier": {"system": ORGNR_SYSTEM, "value": KOMMUNE},
        "type": "Organization",
    }
    shared = {
        e["valueIdentifier"]["value"]
        for e in task.get("extension", [])
        if e["url"] == SHARED_WITH_EXT
    }
    assert shared == {GP, KOMMUNE}
    for number in (GP, KOMMUNE):
        assert (await referrals.fhir("GET", referral.ref, by=number)).status == 200


async def test_a_follow_up_out_of_use_is_refused(referrals: ReferralWorld) -> None:
    referral = await referrals.submit(await referrals.child())
    assert (await referrals.accept(referral)).status == 200
    assert (await referrals.move(referral, "in-progress")).status == 200
    await register(referrals, KOMMUNE, KOMMUNE_HER, active=False)
    plan = output("oppfolgingsplan", {"valueString": "Kommunepsykolog hver 14. dag"})
    refusals = [
        (her(KOMMUNE_HER), "it is not registered, or out of use"),
        (orgnr(KOMMUNE), "it is not registered, or out of use"),
        (her(KOMMUNE_HER, type="Patient"), "Task.output[1].valueReference.type"),
    ]
    for named, message in refusals:
        by = output("ansvarlig-oppfolging", {"valueReference": named})
        reply = await referrals.move(referral, "completed", output=[plan, by])
        assert reply.status == 422, reply.body
        assert message in str(reply.body), reply.body


async def test_care_plans_and_teams_name_organisations_by_her_id(
    careplans: CarePlanWorld,
) -> None:
    world = careplans.world
    await register(world, GP, GP_HER)
    await register(world, KOMMUNE, KOMMUNE_HER)
    child = await world.child(age=9)
    await careplans.start_care(child, BUP)
    crisis = plan_of(child, "behandlingsplan", status="active")
    crisis["contributor"] = [her(GP_HER)]
    reply = await careplans.create(crisis, by=BUP)
    assert reply.status == 201, reply.body
    assert reply.json()["contributor"] == [
        {"identifier": {"system": ORGNR_SYSTEM, "value": GP}, "type": "Organization"}
    ]
    crisis["contributor"] = [her("999")]
    reply = await careplans.create(crisis, by=BUP)
    assert reply.status == 422, reply.body
    assert "No organisation is registered in the directory with HER-id 999" in str(reply.body)

    await careplans.consent(child, "ansvarsgruppe", BUP, ("careteam",), by=KOMMUNE)
    coordinator = member(KOMMUNE, "koordinator")
    coordinator["member"] = her(KOMMUNE_HER)
    reply = await careplans.create(team(child, coordinator), by=KOMMUNE)
    assert reply.status == 201, reply.body
    assert reply.json()["participant"][0]["member"] == {
        "identifier": {"system": ORGNR_SYSTEM, "value": KOMMUNE},
        "type": "Organization",
    }
    # An organisation the register has taken out of use does not join a team.
    current = reply.json()
    await register(world, BUP, active=False)
    handover = {**current, "participant": [
        {**current["participant"][0], "period": {"start": "2026-01-01", "end": "2026-06-30"}},
        member(BUP, "koordinator", start="2026-07-01"),
    ]}  # fmt: skip
    reply = await careplans.put(f"CareTeam/{current['id']}", handover, by=KOMMUNE)
    assert reply.status == 422, reply.body
    assert "must act for a registered organisation" in str(reply.body)


def matches(reply: Any) -> list[str]:
    assert reply.status == 200, reply.body
    return [e["resource"]["id"] for e in reply.json().get("entry", [])
            if e["search"]["mode"] == "match"]  # fmt: skip


async def test_a_search_by_her_id_finds_what_names_the_organisation(
    referrals: ReferralWorld,
) -> None:
    await register(referrals, BUP, BUP_HER)
    await register(referrals, GP, GP_HER)
    referral = await referrals.submit(await referrals.child())
    searches = [
        ("ServiceRequest", "performer", BUP_HER, referral.id),
        ("ServiceRequest", "requester", GP_HER, referral.id),
        ("Task", "owner", BUP_HER, referral.task_id),
        ("Task", "requester", GP_HER, referral.task_id),
    ]
    for resource_type, param, her_id, expected in searches:
        found = await referrals.fhir(
            "GET", f"{resource_type}?{param}:identifier={HERID_SYSTEM}|{her_id}", by=BUP
        )
        assert matches(found) == [expected], (resource_type, param, found.body)
        # An unknown HER-id finds nothing, as an unknown organisasjonsnummer does.
        found = await referrals.fhir(
            "GET", f"{resource_type}?{param}:identifier={HERID_SYSTEM}|999", by=BUP
        )
        assert matches(found) == []
        found = await referrals.fhir(
            "GET", f"{resource_type}?{param}:identifier={HERID_SYSTEM}|0{her_id}", by=BUP
        )
        assert found.status == 400, found.body
        assert "without leading zeros" in str(found.body)

    operator = referrals.stack.operator_token()
    found = await referrals.stack.call(
        "GET", f"Organization?identifier={HERID_SYSTEM}|0{BUP_HER}", token=operator
    )
    assert found.status == 400, found.body
    assert "without leading zeros" in str(found.body)

    # The consent service cannot ask the directory: it says to search by orgnr.
    found = await referrals.fhir("GET", f"Consent?actor:identifier={HERID_SYSTEM}|{BUP_HER}", by=GP)
    assert found.status == 400, found.body
    assert "searched here by organisasjonsnummer" in str(found.body)


async def test_a_managing_organisation_named_by_her_id_is_stored_by_orgnr(
    referrals: ReferralWorld,
) -> None:
    await register(referrals, GP, GP_HER)
    child = await referrals.child(care_order=True)
    seen = await referrals.fhir("GET", f"Patient/{child.id}", by=BVT)
    assert seen.status == 200, seen.body
    for named, status in ((her("999"), 422), (her(GP_HER, type="Patient"), 422),
                          (her(GP_HER), 200)):  # fmt: skip
        reply = await referrals.fhir(
            "PUT", f"Patient/{child.id}", {**seen.json(), "managingOrganization": named},
            by=BVT,
        )  # fmt: skip
        assert reply.status == status, (named, reply.body)
    stored = await referrals.stack.call("GET", f"Patient/{child.id}")
    assert stored.json()["managingOrganization"] == {
        "identifier": {"system": ORGNR_SYSTEM, "value": GP},
        "type": "Organization",
    }


async def test_an_organisation_named_by_reference_takes_no_her_id_beside_it(
    referrals: ReferralWorld,
) -> None:
    await register(referrals, BUP, BUP_HER)
    organisation: dict[str, Any] = {"reference": f"Organization/{referrals.organisations[BUP]}"}
    role = {
        "resourceType": "PractitionerRole",
        "organization": organisation,
        "code": [{"coding": [{"system": ROLE_SYSTEM, "code": "barnevernansvarlig"}]}],
    }
    reply = await referrals.fhir("POST", "PractitionerRole", role, by=BUP)
    assert reply.status == 201, reply.body
    organisation["identifier"] = her(BUP_HER)["identifier"]
    reply = await referrals.fhir("POST", "PractitionerRole", role, by=BUP)
    assert reply.status == 422, reply.body
    assert "not by HER-id" in str(reply.body)


async def test_a_disclosure_to_a_barnevernstjeneste_out_of_use_is_refused(world: World) -> None:
    client = RegisterClient(world.stack.session, world.stack.base, world.stack.operator_token())
    row = {"organisasjonsnummer": BVT, "navn": "Barnevernstjenesten", "kind": KINDS[BVT],
           "kommunenummer": "0301", "aktiv": False}  # fmt: skip
    child = await world.child(10)
    note = await world.note(child, "Mistanke om vold i hjemmet", by=GP)
    assert (await client.import_organisations([row])).rows == [(BVT, "updated", "")]
    body = {"patient": child.ref, "recipient": BVT, "resources": [note], "reason": "Blåmerker"}
    refused = await world.api("POST", "disclosures", body, token=world.token(GP, hpr="9144889"))
    assert refused.status == 422, refused.body
    assert "not registered in the directory, or out of use" in str(refused.body)
