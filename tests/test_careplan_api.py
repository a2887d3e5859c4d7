"""The care plan service over HTTP: individual plans under consent, the nine points, one
active plan per child, care teams and their coordinators, kriseplan in an emergency, and
revision dates marked once."""

from __future__ import annotations

import asyncio
import random
from datetime import date, timedelta
from typing import Any

from services.careplan.domain.vocabulary import (
    CHANGED_BY_EXT,
    HANDOVER_EXT,
    MISSING_POINT_EXT,
    NEXT_REVISION_EXT,
    REVISION_DUE_EXT,
)
from services.careplan.revision_monitor import RevisionMonitor
from shared.runtime import ServiceRuntime
from tests.careplan_world import CarePlanWorld, goal, member, person, plan, team, with_reason
from tests.referral_world import (
    BUP,
    BUP2,
    BVT,
    GP,
    INSTITUSJON,
    KOMMUNE,
    LEGEVAKT,
    SKOLE,
    Child,
    org_reference,
)
from tests.support import diagnostics, fodselsnummer, stream_events, wait_for
from tests.test_bad_input_fuzz import VALUES


def codes(resource: dict[str, Any], url: str) -> list[str]:
    return [e["valueCoding"]["code"] for e in resource.get("extension", []) if e["url"] == url]


async def test_an_individual_plan_needs_consent_and_all_nine_points(
    careplans: CarePlanWorld,
) -> None:
    world = careplans.world
    child = await world.child(age=15)
    await careplans.consent(child, "ansvarsgruppe", BUP, ("careteam",), by=KOMMUNE)
    draft = await careplans.create(plan(child, complete=False), by=KOMMUNE)
    assert draft.status == 201, draft.body
    assert len(codes(draft.json(), MISSING_POINT_EXT)) == 9
    reference = f"CarePlan/{draft.json()['id']}"
    # A draft is shared with no one: not even the organisations that will take part.
    assert (await careplans.read(reference, by=BUP)).status == 404
    assert (await careplans.read(reference, by=KOMMUNE)).status == 200

    goal_ref = await careplans.created(goal(child), by=KOMMUNE)
    team_ref = await careplans.created(
        team(child, member(KOMMUNE, "koordinator"), member(BUP, "behandler"),
             person(f"Patient/{child.id}", "pasient")),
        by=KOMMUNE,
    )  # fmt: skip
    body = with_reason(
        {**plan(child, status="active", goals=(goal_ref,), care_team=team_ref),
         "id": draft.json()["id"]}, "Planen er klar",
    )  # fmt: skip
    reply = await careplans.put(reference, body, by=KOMMUNE)
    assert reply.status == 422, reply.body
    assert "consent" in diagnostics(reply)
    await careplans.consent(child, "individuell-plan", BUP, ("individuell-plan", "careteam"), by=GP)
    reply = await careplans.put(reference, body, by=KOMMUNE)
    assert reply.status == 200, reply.body
    assert codes(reply.json(), MISSING_POINT_EXT) == []
    assert any(e["url"] == CHANGED_BY_EXT for e in reply.json()["extension"])
    assert (await careplans.read(reference, by=BUP)).status == 200

    second = await careplans.create(
        plan(child, status="active", goals=(goal_ref,), care_team=team_ref), by=BUP
    )
    assert second.status == 409, second.body
    assert reference.split("/")[1] in second.body.decode()  # BUP may see the first one
    hidden = await careplans.create(
        plan(child, status="active", goals=(goal_ref,), care_team=team_ref), by=GP
    )
    assert hidden.status == 422, hidden.body
    assert "is not a goal of this child" in diagnostics(hidden)
    assert reference.split("/")[1] not in hidden.body.decode()  # the GP may not
    hidden = await careplans.create(plan(child, status="active"), by=GP)
    assert hidden.status == 409, hidden.body
    assert "already has an individual plan" in diagnostics(hidden)
    assert reference.split("/")[1] not in hidden.body.decode()


async def test_plans_are_written_only_about_a_child_the_writer_has_a_relation_to(
    careplans: CarePlanWorld,
) -> None:
    """A plan, goal or care team about a child the organisation has no relation to is
    refused exactly as one about a child that is not registered; collecting a consent
    makes the relation. Schools may not write plans, whatever their relation."""
    world = careplans.world
    child = await world.child(age=12)
    unknown = Child("unregistered", fodselsnummer(date(2014, 3, 3), 900))
    builders = (plan, goal, lambda c: team(c, member(KOMMUNE, "koordinator")))
    for build in builders:
        refused = await careplans.create(build(child), by=KOMMUNE)
        assert refused.status == 422, refused.body
        missing = await careplans.create(build(unknown), by=KOMMUNE)
        assert missing.status == 422, missing.body
        assert "has a relation to" in diagnostics(refused)
        assert diagnostics(refused).replace(child.fnr, "X") == diagnostics(missing).replace(
            unknown.fnr, "X"
        )
    await careplans.consent(child, "ansvarsgruppe", SKOLE, ("careteam",), by=KOMMUNE)
    assert (await world.fhir("GET", f"Patient/{child.id}", by=SKOLE)).status == 200
    for build in builders:
        reply = await careplans.create(build(child), by=SKOLE)
        assert reply.status == 403, reply.body
        assert "may not create" in diagnostics(reply)
        assert (await careplans.create(build(child), by=KOMMUNE)).status == 201


async def test_an_incomplete_plan_stays_a_draft_and_says_what_is_missing(
    careplans: CarePlanWorld,
) -> None:
    world = careplans.world
    child = await world.child(age=10)
    await careplans.consent(child, "individuell-plan", BUP, ("individuell-plan",), by=KOMMUNE)
    reply = await careplans.create(plan(child, status="active"), by=KOMMUNE)
    assert reply.status == 422, reply.body
    text = diagnostics(reply)
    assert "goals" in text and "who coordinates" in text and "who takes part" in text
    reply = await careplans.create(plan(child), by=KOMMUNE)
    assert reply.status == 201, reply.body
    assert codes(reply.json(), MISSING_POINT_EXT) == ["mal", "deltakere", "koordinator"]
    found = await world.fhir("GET", "CarePlan?missing=koordinator", by=KOMMUNE)
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [reply.json()["id"]]
    changed = {**reply.json(), "status": "draft"}
    reply = await careplans.put(f"CarePlan/{changed['id']}", changed, by=KOMMUNE)
    assert reply.status == 422, reply.body  # an individual plan's change says why
    bad = plan(child, "kriseplan")
    bad["extension"] = []
    reply = await careplans.create(bad, by=BUP)
    assert reply.status == 422, reply.body
    assert "legal regime" in diagnostics(reply)


async def test_coordinators_one_at_a_time_handed_over_never_removed(
    careplans: CarePlanWorld,
) -> None:
    world = careplans.world
    child = await world.child(age=11)
    await careplans.consent(child, "ansvarsgruppe", BUP, ("careteam",), by=KOMMUNE)
    await careplans.consent(child, "ansvarsgruppe", SKOLE, ("careteam",), by=KOMMUNE)
    reply = await careplans.create(team(child, member(SKOLE, "koordinator")), by=KOMMUNE)
    assert reply.status == 422, reply.body
    assert "never coordinate" in diagnostics(reply)
    reply = await careplans.create(
        team(child, member(KOMMUNE, "koordinator"), member(BUP, "koordinator")), by=KOMMUNE
    )
    assert reply.status == 409, reply.body
    reply = await careplans.create(
        team(child, member(KOMMUNE, "koordinator"), member(SKOLE, "tillitsperson")), by=KOMMUNE
    )
    assert reply.status == 201, reply.body
    current = reply.json()
    reference = f"CareTeam/{current['id']}"
    removed = {**current, "participant": current["participant"][1:]}
    reply = await careplans.put(reference, removed, by=KOMMUNE)
    assert reply.status == 409, reply.body
    assert "never" in diagnostics(reply)
    handover = {**current, "participant": [
        member(KOMMUNE, "koordinator", end="2026-06-30"), member(SKOLE, "tillitsperson"),
        member(BUP, "koordinator", start="2026-07-01"),
    ]}  # fmt: skip
    reply = await careplans.put(reference, handover, by=KOMMUNE)
    assert reply.status == 200, reply.body
    found = await world.fhir(
        "GET", f"CareTeam?patient=Patient/{child.id}&coordinator-period=le2026-03-01"
        "&coordinator-period=ge2026-03-01", by=KOMMUNE,
    )  # fmt: skip
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [current["id"]]

    async def changed() -> bool:
        events = await stream_events(world.stack)
        return any(e.name == "coordinator-changed" for _, e in events)

    await wait_for(changed)
    event = next(e for _, e in await stream_events(world.stack) if e.name == "coordinator-changed")
    assert event.data["from"]["organization"] == KOMMUNE
    assert event.data["participant"]["organization"] == BUP
    assert set(event.data["members"]) == {KOMMUNE, SKOLE, BUP}


async def test_taking_part_needs_consent_and_a_barnekoordinator_comes_from_the_municipality(
    careplans: CarePlanWorld,
) -> None:
    world = careplans.world
    child = await world.child(age=11)
    await careplans.start_care(child, KOMMUNE)
    await careplans.start_care(child, BUP)
    reply = await careplans.create(
        team(child, member(KOMMUNE, "koordinator"), member(BVT, "saksbehandler")), by=KOMMUNE
    )
    assert reply.status == 422, reply.body
    assert BVT in diagnostics(reply) and "ansvarsgruppe" in diagnostics(reply)
    reply = await careplans.create(team(child, member(BUP, "barnekoordinator")), by=BUP)
    assert reply.status == 403, reply.body
    assert "appointed by the municipality" in diagnostics(reply)
    reply = await careplans.create(team(child, member(KOMMUNE, "barnekoordinator")), by=KOMMUNE)
    assert reply.status == 201, reply.body
    adult = await world.child(age=19)
    await careplans.start_care(adult, KOMMUNE, grantors=(f"Patient/{adult.id}",))
    reply = await careplans.create(team(adult, member(KOMMUNE, "barnekoordinator")), by=KOMMUNE)
    assert reply.status == 422, reply.body
    assert "under 18" in diagnostics(reply)


async def test_legevakt_reads_a_kriseplan_in_an_emergency(careplans: CarePlanWorld) -> None:
    world = careplans.world
    child = await world.child(age=15)
    await careplans.start_care(child, BUP)
    crisis = plan(child, "kriseplan", status="active", contributors=(INSTITUSJON,))
    reference = await careplans.created(crisis, by=BUP)
    assert (await careplans.read(reference, by=INSTITUSJON)).status == 200
    assert (await careplans.read(reference, by=LEGEVAKT)).status == 404
    emergency = {"Barnebro-Emergency-Patient": child.id,
                 "Barnebro-Emergency-Reason": "Selvskading, natt"}  # fmt: skip
    assert (await careplans.read(reference, by=LEGEVAKT, headers=emergency)).status == 404
    reply = await careplans.read(reference, by=LEGEVAKT, headers=emergency, hpr="9144889")
    assert reply.status == 200, reply.body
    assert (await careplans.read(reference, by=GP)).status == 404

    async def reviewed() -> bool:
        events = await stream_events(world.stack)
        return any(e.name == "emergency-access" and e.patient == child.id for _, e in events)

    await wait_for(reviewed)


async def test_a_revision_date_is_marked_due_once_across_restarts(
    careplans: CarePlanWorld,
) -> None:
    world = careplans.world
    child = await world.child(age=9)
    await careplans.start_care(child, BUP)
    crisis = plan(child, "behandlingsplan", status="active", contributors=(GP,))
    reference = await careplans.created(crisis, by=BUP)
    revision = date.today() + timedelta(days=90)

    def monitor(service: ServiceRuntime) -> RevisionMonitor:
        return next(c for c in service.components if isinstance(c, RevisionMonitor))

    assert await monitor(careplans.careplan).scan(revision) == 0
    assert await monitor(careplans.careplan).scan(revision + timedelta(days=1)) == 1
    await careplans.careplan.stop()
    settings = world.stack.settings
    careplans.careplan = ServiceRuntime(careplans.careplan.spec, settings)
    await careplans.careplan.start()
    assert await monitor(careplans.careplan).scan(revision + timedelta(days=9)) == 0
    stored = (await careplans.read(reference, by=BUP)).json()
    assert [e["valueDate"] for e in stored["extension"] if e["url"] == REVISION_DUE_EXT] == [
        revision.isoformat()
    ]
    # Revised: a new date, which falls due in its turn.
    later = (revision + timedelta(days=180)).isoformat()
    stored["extension"] = [
        {**e, "valueDate": later} if e["url"] == NEXT_REVISION_EXT else e
        for e in stored["extension"]
    ]
    assert (await careplans.put(reference, stored, by=BUP)).status == 200
    assert await monitor(careplans.careplan).scan(date.fromisoformat(later) + timedelta(1)) == 1

    async def published() -> bool:
        events = await stream_events(world.stack)
        return sum(e.name == "revision-due" for _, e in events) == 2

    await wait_for(published)


async def test_assign_coordinator_hands_over_and_keeps_the_history(
    careplans: CarePlanWorld,
) -> None:
    world = careplans.world
    child = await world.child(age=14)
    await careplans.consent(child, "ansvarsgruppe", BUP, ("careteam",), by=KOMMUNE)
    reference = await careplans.created(team(child, member(KOMMUNE, "koordinator")), by=KOMMUNE)
    parameters = {"resourceType": "Parameters", "parameter": [
        {"name": "coordinator", "valueReference": org_reference(BUP)},
        {"name": "start", "valueDate": "2026-09-01"},
        {"name": "reason", "valueString": "Barnet er innlagt på BUPA; BUP koordinerer"},
    ]}  # fmt: skip
    reply = await world.fhir("POST", f"{reference}/$assign-coordinator", parameters, by=KOMMUNE)
    assert reply.status == 200, reply.body
    entries = reply.json()["participant"]
    assert [(e["member"]["identifier"]["value"], e["period"].get("end")) for e in entries] == [
        (KOMMUNE, "2026-08-31"),
        (BUP, None),
    ]
    handover = entries[1]["extension"][0]
    assert {p["url"] for p in handover["extension"]} >= {"reason", "from", "by", "at"}
    # Who coordinated on a date, and who now: the search finds the team, its periods say.
    for day in ("2026-03-01", "2026-10-01"):
        found = await world.fhir(
            "GET", f"CareTeam?patient=Patient/{child.id}&coordinator-period=le{day}"
            f"&coordinator-period=ge{day}", by=KOMMUNE,
        )  # fmt: skip
        assert len(found.json()["entry"]) == 1, day
    # The rules hold for the operation as for a plain update.
    school = {**parameters, "parameter": [
        {"name": "coordinator", "valueReference": org_reference(SKOLE)},
        {"name": "reason", "valueString": "Skolen tar over"},
    ]}  # fmt: skip
    reply = await world.fhir("POST", f"{reference}/$assign-coordinator", school, by=KOMMUNE)
    assert reply.status == 422, reply.body
    reply = await world.fhir("POST", f"{reference}/$assign-coordinator", parameters, by=BVT)
    assert reply.status == 404, reply.body  # BVT takes no part: for it the team does not exist
    no_reason = {"resourceType": "Parameters", "parameter": parameters["parameter"][:2]}
    reply = await world.fhir("POST", f"{reference}/$assign-coordinator", no_reason, by=KOMMUNE)
    assert reply.status == 422, reply.body
    history = await world.fhir("GET", f"{reference}/_history", by=KOMMUNE)
    assert len(history.json()["entry"]) == 2


async def test_withdrawing_the_consent_stops_all_sharing_of_the_plan(
    careplans: CarePlanWorld,
) -> None:
    world = careplans.world
    child = await world.child(age=10)
    consent = await careplans.consent(
        child, "individuell-plan", BUP, ("individuell-plan",), by=KOMMUNE
    )
    reference = await careplans.created(plan(child, complete=False), by=KOMMUNE)
    assert (await careplans.read(reference, by=BUP)).status == 200
    consent_id = consent.split("/")[1]
    reply = await world.consent_api(
        "POST", f"consents/{consent_id}/withdrawal",
        {"by": child.parents[0], "reason": "Vil ikke dele"}, by=KOMMUNE,
    )  # fmt: skip
    assert reply.status == 200, reply.body
    # At once: the withdrawal's answer comes after every service can see it.
    assert (await careplans.read(reference, by=BUP)).status == 404
    found = await world.fhir("GET", f"CarePlan?patient=Patient/{child.id}", by=BUP)
    assert found.json()["entry"] == []
    assert (await careplans.read(reference, by=KOMMUNE)).status == 200  # its author


async def test_what_the_server_records_cannot_be_forged(careplans: CarePlanWorld) -> None:
    world = careplans.world
    child = await world.child(age=13)
    await careplans.consent(child, "ansvarsgruppe", BUP, ("careteam",), by=KOMMUNE)
    forged = member(BUP, "koordinator")
    forged["extension"] = [{"url": HANDOVER_EXT, "extension": [
        {"url": "reason", "valueString": "BVT bestemte det"}]}]  # fmt: skip
    reply = await careplans.create(team(child, forged), by=KOMMUNE)
    assert reply.status == 201, reply.body
    assert "extension" not in reply.json()["participant"][0]
    literal = member(KOMMUNE, "koordinator")
    literal["member"] = {"reference": f"Organization/{world.organisations[SKOLE]}"}
    reply = await careplans.create(team(child, literal), by=KOMMUNE)
    assert reply.status == 422, reply.body
    assert "organisasjonsnummer" in diagnostics(reply)
    team_ref = await careplans.created(team(child, member(KOMMUNE, "koordinator")), by=KOMMUNE)
    wrong_type = {"resourceType": "Parameters", "parameter": [
        {"name": "coordinator", "valueReference": org_reference(BUP)},
        {"name": "role", "valueCoding": {"code": "koordinator"}},
        {"name": "reason", "valueString": "test"}]}  # fmt: skip
    reply = await world.fhir("POST", f"{team_ref}/$assign-coordinator", wrong_type, by=KOMMUNE)
    assert reply.status == 400, reply.body  # not the type the operation declares
    assert "role as valueCode" in diagnostics(reply)
    # An individual plan's change gives its own reason: an old one is not reused.
    draft = (await careplans.create(plan(child, complete=False), by=KOMMUNE)).json()
    first = with_reason(draft, "første")
    reply = await careplans.put(f"CarePlan/{draft['id']}", first, by=KOMMUNE)
    assert reply.status == 200, reply.body
    again = {**reply.json(), "description": "Ny tekst"}
    reply = await careplans.put(f"CarePlan/{draft['id']}", again, by=KOMMUNE)
    assert reply.status == 422, reply.body


async def test_assigning_and_updating_a_team_at_once_both_finish(
    careplans: CarePlanWorld,
) -> None:
    world = careplans.world
    child = await world.child(age=12)
    await careplans.consent(child, "ansvarsgruppe", BUP, ("careteam",), by=KOMMUNE)
    for _ in range(4):
        created = await careplans.create(team(child, member(KOMMUNE, "koordinator")), by=KOMMUNE)
        assert created.status == 201, created.body
        current = created.json()
        reference = f"CareTeam/{current['id']}"
        parameters = {"resourceType": "Parameters", "parameter": [
            {"name": "coordinator", "valueReference": org_reference(BUP)},
            {"name": "reason", "valueString": "Overtar"}]}  # fmt: skip
        assign = world.fhir("POST", f"{reference}/$assign-coordinator", parameters, by=KOMMUNE)
        update = careplans.put(reference, {**current, "status": "active"}, by=KOMMUNE)
        assigned, updated = await asyncio.gather(assign, update)
        assert assigned.status == 200, assigned.body
        # After the handover, the stale update would remove the new coordinator: refused.
        assert updated.status in (200, 409), updated.body


async def test_an_individual_plan_is_released_only_by_a_consent_for_it(
    careplans: CarePlanWorld,
) -> None:
    """A consent for other plans or for the care team does not open the individual plan,
    and a consent to the individual plan does not open other plans."""
    world = careplans.world
    child = await world.child(age=11)
    await careplans.start_care(child, KOMMUNE)
    ip = await careplans.created(plan(child, complete=False), by=KOMMUNE)
    treatment = plan(child, "behandlingsplan", status="active", regime="barnevern")
    treatment["note"] = [{"text": "Mistanke om vold fra far"}]
    other = await careplans.created(treatment, by=BVT)
    goal_ref = await careplans.created(goal(child), by=KOMMUNE)
    await world.consent(child, "ansvarsgruppe", BUP, ("careplan", "careteam"))
    assert (await careplans.read(other, by=BUP)).status == 200
    for hidden in (ip, goal_ref):
        assert (await careplans.read(hidden, by=BUP)).status == 404
    found = await world.fhir("GET", f"CarePlan?patient=Patient/{child.id}&_total=accurate", by=BUP)
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [other.split("/")[1]]
    assert found.json()["total"] == 1
    await world.consent(child, "individuell-plan", BUP2, ("individuell-plan",))
    for seen in (ip, goal_ref):
        assert (await careplans.read(seen, by=BUP2)).status == 200
    assert (await careplans.read(other, by=BUP2)).status == 404


async def test_random_bad_care_plan_input_never_gets_a_500(careplans: CarePlanWorld) -> None:
    """Seeded random damage to plans, goals, teams and $assign-coordinator parameters:
    always a 2xx or a 4xx with an OperationOutcome, never a 500."""
    rng = random.Random(35)
    world = careplans.world
    child = await world.child(age=12)
    await careplans.start_care(child, KOMMUNE)
    team_ref = await careplans.created(team(child, member(KOMMUNE, "koordinator")), by=KOMMUNE)
    seeds: dict[str, dict[str, Any]] = {
        "CarePlan": plan(child),
        "Goal": goal(child),
        "CareTeam": team(child, member(KOMMUNE, "koordinator")),
        "Parameters": {"resourceType": "Parameters", "parameter": [
            {"name": "coordinator", "valueReference": org_reference(KOMMUNE)},
            {"name": "reason", "valueString": "x"}]},
    }  # fmt: skip
    keys = ["subject", "category", "status", "intent", "extension", "activity", "goal",
            "careTeam", "participant", "contributor", "period", "note", "description",
            "lifecycleStatus", "parameter"]  # fmt: skip
    for _ in range(60):
        kind = rng.choice(list(seeds))
        body = dict(seeds[kind])
        for _ in range(rng.randint(1, 3)):
            body[rng.choice(keys)] = rng.choice(VALUES)
        body["resourceType"] = kind
        if kind == "Parameters":
            reply = await world.fhir("POST", f"{team_ref}/$assign-coordinator", body, by=KOMMUNE)
        else:
            reply = await world.fhir("POST", kind, body, by=KOMMUNE)
        assert reply.status < 500, (kind, body, reply.body)
        if reply.status >= 400:
            assert reply.json()["resourceType"] == "OperationOutcome", reply.body


async def test_a_plan_names_only_records_of_the_same_child_that_its_writer_may_see(
    careplans: CarePlanWorld,
) -> None:
    """A plan of any category: its goals, care teams and the plans it builds on, replaces
    or is part of are the child's own, and one absent answers as one of another child."""
    world = careplans.world
    child, other = await world.child(age=12), await world.child(age=12)
    for someone in (child, other):
        await careplans.consent(someone, "ansvarsgruppe", BUP, ("careteam",), by=KOMMUNE)
    others_goal = await careplans.created(goal(other), by=KOMMUNE)
    others_plan = await careplans.created(plan(other, "kriseplan"), by=KOMMUNE)
    nowhere = "00000000-0000-4000-8000-000000000000"
    for element, reference in (
        ("goal", others_goal),
        ("goal", f"Goal/{nowhere}"),
        ("goal", others_plan),
        ("careTeam", f"CareTeam/{nowhere}"),
        ("basedOn", others_plan),
        ("basedOn", f"CarePlan/{nowhere}"),
        ("replaces", f"CarePlan/{nowhere}"),
        ("partOf", others_plan),
    ):
        body = {**plan(child, "kriseplan"), element: [{"reference": reference}]}
        reply = await careplans.create(body, by=KOMMUNE)
        assert reply.status == 422, (element, reference, reply.body)
        assert reply.issues()[0]["expression"] == [f"CarePlan.{element}"]
        assert diagnostics(reply).startswith(f"{reference} is not a")
    own_goal = await careplans.created(goal(child), by=KOMMUNE)
    own_plan = await careplans.created(plan(child, "kriseplan", goals=(own_goal,)), by=KOMMUNE)
    based = {**plan(child, "kriseplan"), "basedOn": [{"reference": own_plan}]}
    assert (await careplans.create(based, by=KOMMUNE)).status == 201
