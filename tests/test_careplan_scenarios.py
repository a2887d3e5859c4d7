"""Care plan scenarios end to end: the Jente 15 case (DOMAIN §9), nasjonalt forløp, and
the provenance of what a plan says (the Gutt 8 case)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from services.careplan.domain.vocabulary import PHASE_SYSTEM, PROVENANCE_EXT
from services.referral.domain.vocabulary import COMPLETENESS_EXT, FORLOP_COORDINATOR_EXT
from tests.careplan_world import CarePlanWorld, goal, member, person, plan, team, with_reason
from tests.referral_world import BUP, BVT, GP, INSTITUSJON, KOMMUNE, LEGEVAKT, org_reference
from tests.support import diagnostics, stream_events, wait_for


def provenance(statement: dict[str, Any]) -> dict[str, Any]:
    ext = next(e for e in statement["extension"] if e["url"] == PROVENANCE_EXT)
    return {
        p["url"]: next(v for k, v in p.items() if k.startswith("value")) for p in ext["extension"]
    }


async def test_jente_15(careplans: CarePlanWorld) -> None:
    """Years in BUP, barnevern measures, self-harm, acute admissions via legevakt. Expected:
    a care team with a coordinator, a kriseplan legevakt reads in an emergency at night,
    consents given by who holds the authority (here barnevern, which holds a care order)."""
    world = careplans.world
    child = await world.child(age=15, care_order=True)
    bvt = f"Organization/{world.organisations[BVT]}"
    # The parents cannot consent: the barnevernstjeneste holding the care order does.
    refused = await world.consent_api("POST", "consents", {
        "patient": f"Patient/{child.id}", "purpose": "ansvarsgruppe",
        "recipients": {"organizations": [BUP]}, "categories": ["careteam"],
        "signatures": [{"grantor": child.parents[0], "decision": "consent",
                        "method": "in-person", "collected_by": "Saksbehandler Hansen"}],
        "child_view": {"heard": True, "statement": "Ok", "heard_by": "Saksbehandler Hansen"},
    }, by=BVT)  # fmt: skip
    assert refused.status == 422, refused.body
    # Sharing that reaches barnevern (the institution) needs the girl's own consent too.
    for orgnr, grantors in ((BUP, (bvt,)), (INSTITUSJON, (bvt, f"Patient/{child.id}"))):
        await world.consent(child, "ansvarsgruppe", orgnr, ("careteam",), grantors=grantors, by=BVT)
        await world.consent(
            child,
            "individuell-plan",
            orgnr,
            ("individuell-plan", "careteam"),
            grantors=grantors,
            by=BVT,
        )
    # The ansvarsgruppe: barnevern coordinates; the girl herself is a member.
    team_ref = await careplans.created(
        team(child, member(BVT, "koordinator"), member(BUP, "behandler"),
             member(INSTITUSJON, "hovedkontakt"), person(f"Patient/{child.id}", "pasient")),
        by=BVT,
    )  # fmt: skip
    found = await world.fhir(
        "GET", f"CareTeam?patient=Patient/{child.id}&role=koordinator", by=INSTITUSJON
    )
    coordinators = [
        p["member"]["identifier"]["value"]
        for e in found.json()["entry"]
        for p in e["resource"]["participant"]
        if p["role"][0]["coding"][0]["code"] == "koordinator"
    ]
    assert coordinators == [BVT]
    # Her individual plan, under barnevern law, shared with the team under the consent.
    goal_ref = await careplans.created(goal(child, "Trygg hverdag uten selvskading"), by=BVT)
    ip = plan(child, status="active", regime="barnevern", goals=(goal_ref,), care_team=team_ref)
    reply = await careplans.create(ip, by=BVT)
    assert reply.status == 201, reply.body
    ip_ref = f"CarePlan/{reply.json()['id']}"
    for orgnr in (BUP, INSTITUSJON):
        assert (await careplans.read(ip_ref, by=orgnr)).status == 200
    assert (await careplans.read(ip_ref, by=GP)).status == 404  # the GP does not know her
    # The kriseplan BUP and the institution made in peacetime.
    crisis = plan(child, "kriseplan", status="active", contributors=(INSTITUSJON,))
    crisis_ref = await careplans.created(crisis, by=BUP)
    assert (await careplans.read(crisis_ref, by=LEGEVAKT)).status == 404
    night = {"Barnebro-Emergency-Patient": child.id,
             "Barnebro-Emergency-Reason": "Innbrakt etter selvskading kl 02"}  # fmt: skip
    assert (await careplans.read(crisis_ref, by=LEGEVAKT, headers=night)).status == 404
    reply = await careplans.read(crisis_ref, by=LEGEVAKT, headers=night, hpr="9144889")
    assert reply.status == 200, reply.body
    # Only the kriseplan's data was asked for; the emergency is reviewed afterwards.

    async def reviewed() -> bool:
        events = await stream_events(world.stack)
        return any(e.name == "emergency-access" and e.patient == child.id for _, e in events)

    await wait_for(reviewed)
    # A handover: the institution's helseansvarlig... no: coordination moves to the
    # municipality's service, with the reason; the history says who coordinated when.
    await world.consent(child, "ansvarsgruppe", KOMMUNE, ("careteam",), grantors=(bvt,), by=BVT)
    parameters = {"resourceType": "Parameters", "parameter": [
        {"name": "coordinator", "valueReference": org_reference(KOMMUNE)},
        {"name": "start", "valueDate": (date.today() + timedelta(days=1)).isoformat()},
        {"name": "reason", "valueString": "Flytter hjem; kommunen koordinerer"},
    ]}  # fmt: skip
    reply = await world.fhir("POST", f"{team_ref}/$assign-coordinator", parameters, by=BVT)
    assert reply.status == 200, reply.body
    periods = {
        p["member"]["identifier"]["value"]: p["period"]
        for p in reply.json()["participant"]
        if p["role"][0]["coding"][0]["code"] == "koordinator"
    }
    assert periods[BVT]["end"] == date.today().isoformat()
    assert "end" not in periods[KOMMUNE]


async def test_nasjonalt_forlop(careplans: CarePlanWorld) -> None:
    world = careplans.world
    child = await world.child(age=12)

    def phase(code: str, day: str) -> dict[str, Any]:
        return {"detail": {"status": "scheduled", "description": code,
                           "code": {"coding": [{"system": PHASE_SYSTEM, "code": code}]},
                           "scheduledPeriod": {"start": day},
                           "performer": [org_reference(BVT)]}}  # fmt: skip

    forlop = plan(child, "forlopsplan", status="active", regime="barnevern", complete=False)
    forlop["activity"] = [phase("avklaringsmote", "2026-09-01"), phase("kartlegging", "2026-09-15")]
    reply = await careplans.create(forlop, by=BVT)
    assert reply.status == 422, reply.body
    assert "nasjonalt-forlop" in diagnostics(reply)
    everyone = (*child.parents, f"Patient/{child.id}")  # under 15: the child and the parents
    await world.consent(child, "nasjonalt-forlop", BVT, ("careplan",), grantors=everyone)
    disordered = {**forlop, "activity": [phase("avklaringsmote", "2026-09-10"),
                                         phase("kartlegging", "2026-09-01")]}  # fmt: skip
    reply = await careplans.create(disordered, by=BVT)
    assert reply.status == 422, reply.body
    assert "comes after" in diagnostics(reply)
    reply = await careplans.create(forlop, by=BVT)
    assert reply.status == 201, reply.body
    recorded = {**reply.json(), "activity": [*reply.json()["activity"],
                                             phase("statusmote", "2026-10-01")]}  # fmt: skip
    reply = await careplans.put(f"CarePlan/{recorded['id']}", recorded, by=BVT)
    assert reply.status == 200, reply.body
    assert [a["detail"]["code"]["coding"][0]["code"] for a in reply.json()["activity"]] == [
        "avklaringsmote", "kartlegging", "statusmote",
    ]  # fmt: skip
    # A referral to BUP made within the forløp links to it and names its coordinators.
    plan_ref = f"CarePlan/{recorded['id']}"
    named = {"url": FORLOP_COORDINATOR_EXT, "extension": [
        {"url": "role", "valueCode": "forlopskoordinator-kommune"},
        {"url": "coordinator", "valueReference": org_reference(BVT)}]}  # fmt: skip
    referral = await world.submit(
        child, by=BVT, basedOn=[{"reference": plan_ref}], extension=[named]
    )
    markers = [
        e["valueCoding"]["code"]
        for e in referral.response["resource"]["extension"]
        if e["url"] == COMPLETENESS_EXT
    ]
    assert markers == ["mangler-forlopskoordinator-bup"]
    warnings = referral.response["response"]["outcome"]["issue"]
    assert any("forløpskoordinator at BUP" in w["diagnostics"] for w in warnings)
    found = await world.fhir("GET", f"ServiceRequest?based-on={plan_ref}", by=BVT)
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [referral.id]
    # Its coordinator belongs to the barnevernstjeneste.
    await careplans.consent(child, "ansvarsgruppe", BVT, ("careteam",), by=KOMMUNE)
    other = await careplans.created(team(child, member(KOMMUNE, "koordinator")), by=KOMMUNE)
    wrong = {**forlop, "careTeam": [{"reference": other}]}
    reply = await careplans.create(wrong, by=KOMMUNE)
    assert reply.status == 422, reply.body
    assert "000:l.4201" in diagnostics(reply)


async def test_every_statement_keeps_who_said_it(careplans: CarePlanWorld) -> None:
    """Gutt 8: barnevern's suspicion must not turn into BUP's fact as the plan travels."""
    world = careplans.world
    child = await world.child(age=8)
    treatment = plan(child, "behandlingsplan", status="active", regime="barnevern",
                     contributors=(BUP,))  # fmt: skip
    treatment["note"] = [{"text": "Mistanke: kan være utsatt for vold fra far"}]
    reply = await careplans.create(treatment, by=BVT)
    assert reply.status == 201, reply.body
    stored = reply.json()
    said = provenance(stored["note"][0])
    assert said["organization"]["value"] == BVT and said["regime"] == "barnevern"
    # BUP adds its own assessment; the suspicion keeps its author.
    stored["note"].append({"text": "Vurdering: angstsymptomer, ingen funn som bekrefter vold"})
    stored["extension"] = [
        {**e, "valueCode": "helse"} if e["url"].endswith("/legal-regime") else e
        for e in stored["extension"]
    ]
    reply = await careplans.put(f"CarePlan/{stored['id']}", stored, by=BUP)
    assert reply.status == 200, reply.body
    first, second = reply.json()["note"]
    assert provenance(first)["organization"]["value"] == BVT
    assert provenance(first)["regime"] == "barnevern"
    assert provenance(second)["organization"]["value"] == BUP
    # Forged provenance is replaced by the writer's.
    forged = reply.json()
    forged["note"].append({"text": "Fakta: vold", "extension": [
        {"url": PROVENANCE_EXT, "extension": [{"url": "organization", "valueIdentifier": {
            "system": "urn:oid:2.16.578.1.12.4.1.4.101", "value": BVT}}]}]})  # fmt: skip
    reply = await careplans.put(f"CarePlan/{forged['id']}", forged, by=BUP)
    assert reply.status == 200, reply.body
    assert provenance(reply.json()["note"][2])["organization"]["value"] == BUP
    changed = with_reason(reply.json(), "unused for other plans")
    assert (await careplans.put(f"CarePlan/{changed['id']}", changed, by=BUP)).status == 200


async def test_a_statement_carries_its_writers_regime_not_the_plans(
    careplans: CarePlanWorld,
) -> None:
    """A note barnevern writes into a plan under health law is barnevern's statement,
    under barnevern law; BUP's note in the same plan is made under health law; and a Goal
    carries the regime of its writer too."""
    world = careplans.world
    child = await world.child(age=8)
    health_plan = plan(child, "behandlingsplan", status="active", regime="helse",
                       contributors=(BUP,))  # fmt: skip
    health_plan["note"] = [{"text": "Kan være grunn til å tro at barnet er utsatt for vold av far"}]
    reply = await careplans.create(health_plan, by=BVT)
    assert reply.status == 201, reply.body
    stored = reply.json()
    said = provenance(stored["note"][0])
    assert (said["organization"]["value"], said["regime"]) == (BVT, "barnevern")
    stored["note"].append({"text": "Vurdering: angstsymptomer"})
    reply = await careplans.put(f"CarePlan/{stored['id']}", stored, by=BUP)
    assert reply.status == 200, reply.body
    theirs, ours = reply.json()["note"]
    assert provenance(theirs)["regime"] == "barnevern"
    assert (provenance(ours)["organization"]["value"], provenance(ours)["regime"]) == (
        BUP, "helse")  # fmt: skip
    created = await careplans.create(goal(child), by=BVT)
    assert created.status == 201, created.body
    assert provenance(created.json())["regime"] == "barnevern"
