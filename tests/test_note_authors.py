"""A note names only its real author (DOMAIN §9): no writer credits its words to another.

Every note a write adds or changes, on a plan (and its activities' progress notes), a
Goal, a care team, a referral and its Task, may leave `authorReference` out or name the
writer itself by identifier (its organisasjonsnummer, its own HPR number); a note naming
another organisation or person is refused (422) and nothing is written, while a note
of someone else's sent back as stored is kept. Through HTTP, on both databases.
"""

from __future__ import annotations

from typing import Any

from shared.identifiers import HPR_SYSTEM, ORGNR_SYSTEM
from tests.careplan_world import CarePlanWorld, goal, member, plan, team
from tests.referral_world import BUP, BVT, GP, KINDS, referral_bundle
from tests.support import Reply

DOCTOR, OTHER_DOCTOR = "9144900", "9144901"


def by_org(orgnr: str, text: str = "Notat") -> dict[str, Any]:
    return {"text": text, "authorReference": {"identifier": {"system": ORGNR_SYSTEM,
                                                              "value": orgnr}}}  # fmt: skip


def by_person(hpr: str, text: str = "Notat") -> dict[str, Any]:
    reference = {"type": "Practitioner", "identifier": {"system": HPR_SYSTEM, "value": hpr}}
    return {"text": text, "authorReference": reference}


def refused(reply: Reply, *elements: str) -> None:
    assert reply.status == 422, reply.body
    issues = reply.issues()
    assert [tuple(i["expression"]) for i in issues] == [(e,) for e in elements]
    for issue in issues:
        assert issue["code"] == "business-rule"
        assert "names someone other than the writer" in issue["diagnostics"]


async def version(careplans: CarePlanWorld, reference: str) -> str:
    reply = await careplans.read(reference, BUP)
    assert reply.status == 200, reply.body
    return str(reply.json()["meta"]["versionId"])


async def test_a_plan_note_names_only_its_writer(careplans: CarePlanWorld) -> None:
    world = careplans.world
    child = await world.child(age=10)
    await careplans.start_care(child, BUP)
    treatment = plan(child, "behandlingsplan", status="active")

    forged = {**treatment, "note": [by_org(BUP, "Egen"), by_org(BVT, "forged")]}
    refused(await careplans.create(forged, by=BUP), "CarePlan.note[1].authorReference")
    named = {"reference": "Organization/x"}
    literal = {**treatment, "note": [{"text": "x", "authorReference": named}]}
    refused(await careplans.create(literal, by=BUP), "CarePlan.note[0].authorReference")
    display = {**treatment, "note": [{"text": "x", "authorReference": {"display": "BVT"}}]}
    refused(await careplans.create(display, by=BUP), "CarePlan.note[0].authorReference")

    # Its own organisation, its own person, or no author at all: all the writer's.
    doctor = world.stack.token(orgnr=BUP, kind=KINDS[BUP], hpr=DOCTOR)
    treatment["note"] = [by_org(BUP, "Egen"), by_person(DOCTOR, "Legens"), {"text": "Uten"}]
    reply = await world.stack.call("POST", "CarePlan", treatment, token=doctor)
    assert reply.status == 201, reply.body
    reference = f"CarePlan/{reply.json()['id']}"
    stored = reply.json()
    assert [n["authorReference"] for n in stored["note"][:2]] == [
        by_org(BUP)["authorReference"],
        by_person(DOCTOR)["authorReference"],
    ]

    # Another health person of BUP sends the plan back with the doctor's note unchanged,
    # and adds its own: kept; but a changed note naming the doctor is that person's claim.
    other = world.stack.token(orgnr=BUP, kind=KINDS[BUP], hpr=OTHER_DOCTOR)
    stored["note"].append(by_person(OTHER_DOCTOR, "Min"))
    reply = await world.stack.call("PUT", reference, stored, token=other)
    assert reply.status == 200, reply.body
    stored = reply.json()
    changed = [dict(n) for n in stored["note"]]
    changed[1]["text"] = "Legens, endret"
    reply = await world.stack.call("PUT", reference, {**stored, "note": changed}, token=other)
    refused(reply, "CarePlan.note[1].authorReference")

    # A PATCH adding a forged note, and a PUT forging an activity's progress note.
    before = await version(careplans, reference)
    add = [{"op": "add", "path": "/note/-", "value": by_org(BVT, "forged")}]
    patching = {"Content-Type": "application/json-patch+json"}
    reply = await world.fhir("PATCH", reference, add, by=BUP, headers=patching)
    refused(reply, "CarePlan.note[4].authorReference")
    activities = [dict(a) for a in stored["activity"]]
    activities[0]["progress"] = [by_person(OTHER_DOCTOR, "Fremgang")]
    reply = await careplans.put(reference, {**stored, "activity": activities}, by=BUP)
    refused(reply, "CarePlan.activity[0].progress[0].authorReference")
    assert await version(careplans, reference) == before


async def test_goal_and_care_team_notes_name_only_their_writer(
    careplans: CarePlanWorld,
) -> None:
    world = careplans.world
    child = await world.child(age=10)
    await careplans.start_care(child, BUP)
    aim = {**goal(child), "note": [by_org(GP, "forged")]}
    refused(await careplans.create(aim, by=BUP), "Goal.note[0].authorReference")
    aim["note"] = [by_org(BUP, "Egen")]
    goal_ref = await careplans.created(aim, by=BUP)
    stored = (await careplans.read(goal_ref, BUP)).json()
    stored["note"].append(by_org(BVT, "forged"))
    refused(await careplans.put(goal_ref, stored, by=BUP), "Goal.note[1].authorReference")

    members = team(child, member(BUP, "koordinator"))
    members["note"] = [by_org(BVT, "forged")]
    refused(await careplans.create(members, by=BUP), "CareTeam.note[0].authorReference")
    members["note"] = [by_org(BUP, "Egen")]
    assert (await careplans.create(members, by=BUP)).status == 201


async def test_referral_and_task_notes_name_only_their_writer(
    careplans: CarePlanWorld,
) -> None:
    world = careplans.world
    child = await world.child(age=10)
    bundle = referral_bundle(child, by=GP, to=BUP, note=[by_org(BVT, "forged")])
    reply = await world.fhir("POST", "", bundle, by=GP)
    assert reply.status == 422, reply.body
    assert any("names someone other than the writer" in i["diagnostics"]
               for i in reply.issues())  # fmt: skip
    referral = await world.submit(child, by=GP, note=[by_org(GP, "Egen")])
    refused(
        await world.move(referral, "received", note=[by_org(GP, "forged")]),
        "Task.note[0].authorReference",
    )
    assert (await world.move(referral, "received", note=[by_org(BUP, "Mottatt")])).status == 200
