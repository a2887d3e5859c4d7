"""TEMPORARY review probes (to be deleted)."""

from __future__ import annotations

import asyncio
from typing import Any

from services.careplan.domain.vocabulary import MISSING_POINT_EXT
from tests.careplan_world import CarePlanWorld, goal, member, plan, team, with_reason
from tests.referral_world import (
    BUP,
    BUP2,
    BVT,
    GP,
    KOMMUNE,
    LEGEVAKT,
    SKOLE,
    org_reference,
)


def show(tag: str, reply: Any) -> None:
    print(f"\n### {tag}: {reply.status} {reply.body[:600]!r}")


async def active_ip(careplans: CarePlanWorld, child: Any, by: str) -> tuple[str, str, str]:
    goal_ref = await careplans.created(goal(child), by=by)
    team_ref = await careplans.created(team(child, member(by, "koordinator")), by=by)
    reply = await careplans.create(
        plan(child, status="active", goals=(goal_ref,), care_team=team_ref), by=by
    )
    return goal_ref, team_ref, reply


async def test_p1_ip_visible_under_other_purpose(careplans: CarePlanWorld) -> None:
    world = careplans.world
    child = await world.child(age=10)
    ref = await careplans.created(plan(child, complete=False), by=KOMMUNE)
    show("BUP before any consent", await careplans.read(ref, by=BUP))
    await world.consent(child, "ansvarsgruppe", BUP, ("careplan", "careteam"))
    show("BUP under ansvarsgruppe consent w/ careplan category", await careplans.read(ref, by=BUP))
    s = await world.fhir("GET", f"CarePlan?patient=Patient/{child.id}&_total=accurate", by=BUP)
    show("BUP search", s)


async def test_p2_409_names_hidden_ip(careplans: CarePlanWorld) -> None:
    world = careplans.world
    child = await world.child(age=10)
    await world.consent(child, "individuell-plan", BUP, ("careplan",))
    _, _, first = await active_ip(careplans, child, KOMMUNE)
    show("KOMMUNE active IP", first)
    first_id = first.json()["id"]
    show("BUP2 read first", await careplans.read(f"CarePlan/{first_id}", by=BUP2))
    _, _, second = await active_ip(careplans, child, BUP2)
    show("BUP2 second active IP", second)
    print("LEAKS ID:", first_id in second.body.decode())


async def test_p3_validate_probes_forlop_consent(careplans: CarePlanWorld) -> None:
    world = careplans.world
    with_c = await world.child(age=12)
    without = await world.child(age=12)
    everyone = (*with_c.parents, f"Patient/{with_c.id}")
    await world.consent(with_c, "nasjonalt-forlop", BVT, ("careplan",), grantors=everyone)
    for name, child in (("with consent", with_c), ("without", without)):
        body = plan(child, "forlopsplan", status="active", regime="barnevern", complete=False)
        reply = await world.fhir("POST", "CarePlan/$validate", body, by=SKOLE)
        show(f"SKOLE $validate forlop {name}", reply)
        body = plan(child, complete=False)
        reply = await careplans.create(body, by=SKOLE)
        print(
            name,
            "IP draft missing:",
            [
                e["valueCoding"]["code"]
                for e in reply.json().get("extension", [])
                if e["url"] == MISSING_POINT_EXT
            ],
        )


async def test_p4_assign_role_coding_500(careplans: CarePlanWorld) -> None:
    world = careplans.world
    child = await world.child(age=14)
    ref = await careplans.created(team(child, member(KOMMUNE, "koordinator")), by=KOMMUNE)
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "coordinator", "valueReference": org_reference(KOMMUNE)},
            {"name": "role", "valueCoding": {"code": "koordinator"}},
            {"name": "reason", "valueString": "x"},
        ],
    }
    show(
        "role as valueCoding",
        await world.fhir("POST", f"{ref}/$assign-coordinator", params, by=KOMMUNE),
    )
    params = {"resourceType": "Parameters", "parameter": {"name": "x"}}
    show(
        "parameter dict", await world.fhir("POST", f"{ref}/$assign-coordinator", params, by=KOMMUNE)
    )
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "coordinator",
                "valueReference": {"reference": "Organization/abc", "identifier": 5},
            },
            {"name": "reason", "valueString": "x"},
        ],
    }
    show("bad member", await world.fhir("POST", f"{ref}/$assign-coordinator", params, by=KOMMUNE))
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "coordinator", "valueReference": org_reference(KOMMUNE)},
            {"name": "start", "valueDate": "2026-13-45"},
            {"name": "reason", "valueString": "x"},
        ],
    }
    show("bad start", await world.fhir("POST", f"{ref}/$assign-coordinator", params, by=KOMMUNE))
    show(
        "assign hidden team as BUP2",
        await world.fhir(
            "POST",
            f"{ref}/$assign-coordinator",
            {
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "coordinator", "valueReference": org_reference(BUP2)},
                    {"name": "reason", "valueString": "x"},
                ],
            },
            by=BUP2,
        ),
    )
    show(
        "assign nonexisting",
        await world.fhir(
            "POST",
            "CareTeam/nope/$assign-coordinator",
            {"resourceType": "Parameters", "parameter": []},
            by=BUP2,
        ),
    )


async def test_p5_school_coordinates_by_literal_reference(careplans: CarePlanWorld) -> None:
    world = careplans.world
    child = await world.child(age=11)
    school_id = world.organisations[SKOLE]
    t = team(
        child,
        {
            "role": [
                {
                    "coding": [
                        {
                            "system": "https://fhir.barnebro.no/CodeSystem/care-role",
                            "code": "koordinator",
                        }
                    ]
                }
            ],
            "member": {"reference": f"Organization/{school_id}"},
            "period": {"start": "2026-01-01"},
        },
    )
    from shared.codes import ROLE_SYSTEM

    t["participant"][0]["role"][0]["coding"][0]["system"] = ROLE_SYSTEM
    show("school koordinator by literal ref (no consent)", await careplans.create(t, by=KOMMUNE))
    t2 = team(child, member(SKOLE, "koordinator"))
    show("school koordinator by identifier", await careplans.create(t2, by=KOMMUNE))


async def test_p6_stale_change_reason(careplans: CarePlanWorld) -> None:
    world = careplans.world
    child = await world.child(age=10)
    reply = await careplans.create(with_reason(plan(child, complete=False), "første"), by=KOMMUNE)
    stored = reply.json()
    stored["status"] = "draft"
    stored["note"] = [{"text": "endring uten ny grunn"}]
    r = await careplans.put(f"CarePlan/{stored['id']}", stored, by=KOMMUNE)
    show("PUT with carried-over reason", r)


async def test_p7_withdrawal_active_ip(careplans: CarePlanWorld) -> None:
    world = careplans.world
    child = await world.child(age=10)
    consent = await world.consent(child, "individuell-plan", BUP, ("careplan",))
    _, _, first = await active_ip(careplans, child, KOMMUNE)
    ref = f"CarePlan/{first.json()['id']}"
    show("BUP read before", await careplans.read(ref, by=BUP))
    r = await world.consent_api(
        "POST",
        f"consents/{consent.split('/')[1]}/withdrawal",
        {"reason": "trekker", "withdrawn_by": child.parents[0]},
        by=GP,
    )
    show("withdraw", r)
    await asyncio.sleep(1.0)
    show("BUP read after", await careplans.read(ref, by=BUP))
    after = await careplans.read(ref, by=KOMMUNE)
    print(
        "status after withdrawal:",
        after.json()["status"],
        [
            e["valueCoding"]["code"]
            for e in after.json().get("extension", [])
            if e["url"] == MISSING_POINT_EXT
        ],
    )
    emergency = {"Barnebro-Emergency-Patient": child.id, "Barnebro-Emergency-Reason": "natt"}
    show("LEGEVAKT emergency read of IP", await careplans.read(ref, by=LEGEVAKT, headers=emergency))
