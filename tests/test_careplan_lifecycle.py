"""An individual plan's life over HTTP: one open plan per child (also when two writers
create at once, and without telling a caller that may not read it which plan it is), and
a plan whose consent is withdrawn goes on hold, says `samtykke` is missing and tells the
care team once, across instances and restarts."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

from services.careplan import careplan_spec
from services.careplan.domain.lifecycle import ONE_PER_PERSON
from services.careplan.domain.vocabulary import MISSING_POINT_EXT, PHASE_SYSTEM
from shared.access.decision import purpose_consents
from shared.runtime import ServiceRuntime
from tests.careplan_world import CarePlanWorld, goal, member, person, plan, team, with_reason
from tests.referral_world import BUP, BVT, GP, KOMMUNE, Child, org_reference
from tests.support import stream_events, wait_for


def codes(resource: dict[str, Any]) -> list[str]:
    return [
        e["valueCoding"]["code"]
        for e in resource.get("extension", [])
        if e["url"] == MISSING_POINT_EXT
    ]


def first_issue(reply: Any) -> str:
    return str(reply.issues()[0]["diagnostics"])


async def consented(careplans: CarePlanWorld, child: Child, purpose: str, yes: bool) -> None:
    """Wait until the care plan service's consent view has (or no longer has) a consent
    for `purpose`."""
    view = careplans.careplan.consent_view
    assert view is not None

    async def there() -> bool:
        return bool(purpose_consents(view.state(child.id), purpose, date.today())) == yes

    await wait_for(there)


async def complete_plan(careplans: CarePlanWorld, child: Child) -> tuple[str, str]:
    """KOMMUNE's individual plan with all nine points, active under the consent the GP
    collected naming BUP. Returns the plan and the Consent references."""
    await careplans.consent(child, "ansvarsgruppe", BUP, ("careteam",), by=KOMMUNE)
    goal_ref = await careplans.created(goal(child), by=KOMMUNE)
    team_ref = await careplans.created(
        team(child, member(KOMMUNE, "koordinator"), member(BUP, "behandler"),
             person(f"Patient/{child.id}", "pasient")),
        by=KOMMUNE,
    )  # fmt: skip
    consent = await careplans.consent(
        child, "individuell-plan", BUP, ("individuell-plan", "careteam"), by=GP
    )
    await consented(careplans, child, "individuell-plan", True)
    active = plan(child, status="active", goals=(goal_ref,), care_team=team_ref)
    return await careplans.created(active, by=KOMMUNE), consent


async def changed(
    careplans: CarePlanWorld, reference: str, status: str, why: str, *, expect: int = 200
) -> dict[str, Any]:
    current = (await careplans.read(reference, by=KOMMUNE)).json()
    reply = await careplans.put(reference, with_reason({**current, "status": status}, why), KOMMUNE)
    assert reply.status == expect, reply.body
    return reply.json()  # type: ignore[no-any-return]


async def withdraw(careplans: CarePlanWorld, child: Child, consent: str, by: str) -> None:
    reply = await careplans.world.consent_api(
        "POST", f"consents/{consent.split('/')[1]}/withdrawal",
        {"by": child.parents[0], "reason": "Vil ikke dele"}, by=by,
    )  # fmt: skip
    assert reply.status == 200, reply.body


async def plan_events(careplans: CarePlanWorld, reference: str, name: str) -> list[Any]:
    plan_id = reference.split("/")[1]
    return [
        event
        for _, event in await stream_events(careplans.world.stack)
        if event.resource_type == "CarePlan" and event.resource_id == plan_id
        and event.type.endswith(f".{name}")
    ]  # fmt: skip


async def test_a_child_has_one_open_individual_plan(careplans: CarePlanWorld) -> None:
    """A plan on hold or a draft counts as the child's plan as much as an active one; a
    completed one does not. The refusal reads the same to a writer that may not read the
    plan, and names the plan only to one that may."""
    child = await careplans.world.child(age=13)
    first, _ = await complete_plan(careplans, child)
    await changed(careplans, first, "on-hold", "Familien flytter; planen venter")
    for status in ("active", "draft"):
        second = await careplans.create(plan(child, status=status), by=KOMMUNE)
        assert second.status == 409, second.body
        assert first_issue(second) == ONE_PER_PERSON
        assert first.split("/")[1] in second.body.decode()  # KOMMUNE wrote it: named
    # The GP collected the consent but is not named by it: it may not read the plan.
    assert (await careplans.read(first, by=GP)).status == 404
    hidden = await careplans.create(plan(child, status="draft"), by=GP)
    assert hidden.status == 409, hidden.body
    assert [i["diagnostics"] for i in hidden.issues()] == [ONE_PER_PERSON]
    assert first.split("/")[1] not in hidden.body.decode()
    # Completed, it is a record: a new plan may begin, and the old one is not reopened.
    await changed(careplans, first, "completed", "Målene er nådd")
    new = await careplans.created(plan(child, complete=False), by=KOMMUNE)
    reopened = await changed(careplans, first, "draft", "Gjenåpnes", expect=409)
    assert reopened["issue"][0]["diagnostics"] == ONE_PER_PERSON
    found = await careplans.world.fhir(
        "GET", f"CarePlan?patient=Patient/{child.id}&status=draft,active,on-hold", by=KOMMUNE
    )
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [new.split("/")[1]]


async def test_two_creates_at_once_make_one_plan(careplans: CarePlanWorld) -> None:
    child = await careplans.world.child(age=9)
    await careplans.start_care(child, KOMMUNE)
    for _ in range(3):
        replies = await asyncio.gather(
            *(careplans.create(plan(child, complete=False), by=KOMMUNE) for _ in range(4))
        )
        assert sorted(r.status for r in replies) == [201, 409, 409, 409], [r.body for r in replies]
        # The lock lets one writer count at a time: each refusal is the rule's own.
        assert all(first_issue(r) == ONE_PER_PERSON for r in replies if r.status == 409)
        made = next(r.json() for r in replies if r.status == 201)
        await changed(careplans, f"CarePlan/{made['id']}", "revoked", "Opprettet ved en feil")


async def test_a_withdrawn_consent_puts_the_active_plan_on_hold_once(
    careplans: CarePlanWorld,
) -> None:
    """With two instances of the service consuming the consent events, the plan goes on
    hold once, with one event; it is active again only by an update under a new consent."""
    world = careplans.world
    child = await world.child(age=12)
    reference, consent = await complete_plan(careplans, child)
    versions = len((await world.fhir("GET", f"{reference}/_history", by=KOMMUNE)).json()["entry"])
    settings = world.stack.settings
    second = ServiceRuntime(careplan_spec(settings), settings)
    await second.start()
    try:
        await withdraw(careplans, child, consent, by=GP)

        async def on_hold() -> bool:
            stored = (await careplans.read(reference, by=KOMMUNE)).json()
            return stored["status"] == "on-hold" and codes(stored) == ["samtykke"]

        await wait_for(on_hold)

        async def told() -> bool:
            return bool(await plan_events(careplans, reference, "consent-lost"))

        await wait_for(told)
        await asyncio.sleep(1)  # time for a second handling, were there one
    finally:
        await second.stop()
    [event] = await plan_events(careplans, reference, "consent-lost")
    assert event.data["status"] == "on-hold" and event.data["previousStatus"] == "active"
    assert event.data["purpose"] == "individuell-plan"
    assert event.data["careTeam"] and event.data["careTeam"][0].startswith("CareTeam/")
    history = (await world.fhir("GET", f"{reference}/_history", by=KOMMUNE)).json()["entry"]
    assert len(history) == versions + 1
    found = await world.fhir(
        "GET", f"CarePlan?patient=Patient/{child.id}&missing=samtykke", by=KOMMUNE
    )
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [reference.split("/")[1]]
    # Active again only under a new consent, by an explicit update.
    refused = await changed(careplans, reference, "active", "Vi fortsetter", expect=422)
    assert "individuell-plan" in refused["issue"][0]["diagnostics"]
    await careplans.consent(child, "individuell-plan", BUP, ("individuell-plan",), by=GP)
    await consented(careplans, child, "individuell-plan", True)
    again = await changed(careplans, reference, "active", "Nytt samtykke fra foreldrene")
    assert codes(again) == []
    assert len(await plan_events(careplans, reference, "consent-lost")) == 1


async def test_a_consent_lost_while_the_service_was_down(careplans: CarePlanWorld) -> None:
    """The consumer continues where it stopped: a draft individual plan keeps its status
    and says the consent is missing; an active forløp plan goes on hold."""
    world = careplans.world
    child = await world.child(age=12)
    ip_consent = await careplans.consent(
        child, "individuell-plan", BUP, ("individuell-plan",), by=KOMMUNE
    )
    everyone = (*child.parents, f"Patient/{child.id}")  # under 15: the child and the parents
    forlop_consent = await world.consent(
        child, "nasjonalt-forlop", BVT, ("careplan",), grantors=everyone, by=BVT
    )
    await consented(careplans, child, "individuell-plan", True)
    await consented(careplans, child, "nasjonalt-forlop", True)
    draft = await careplans.create(plan(child, complete=False), by=KOMMUNE)
    assert draft.status == 201, draft.body
    assert "samtykke" not in codes(draft.json())
    draft_ref = f"CarePlan/{draft.json()['id']}"
    forlop = plan(child, "forlopsplan", status="active", regime="barnevern", complete=False)
    forlop["activity"] = [{"detail": {
        "status": "scheduled", "description": "Avklaringsmøte",
        "code": {"coding": [{"system": PHASE_SYSTEM, "code": "avklaringsmote"}]},
        "scheduledPeriod": {"start": "2026-09-01"}, "performer": [org_reference(BVT)],
    }}]  # fmt: skip
    made = await careplans.create(forlop, by=BVT)
    assert made.status == 201, made.body
    assert codes(made.json()) == []
    forlop_ref = f"CarePlan/{made.json()['id']}"

    await careplans.careplan.stop()
    await withdraw(careplans, child, ip_consent, by=KOMMUNE)
    await withdraw(careplans, child, forlop_consent, by=BVT)
    settings = world.stack.settings
    careplans.careplan = ServiceRuntime(careplans.careplan.spec, settings)
    await careplans.careplan.start()

    async def marked() -> bool:
        ip = (await careplans.read(draft_ref, by=KOMMUNE)).json()
        fp = (await careplans.read(forlop_ref, by=BVT)).json()
        return "samtykke" in codes(ip) and fp["status"] == "on-hold"

    await wait_for(marked)
    ip = (await careplans.read(draft_ref, by=KOMMUNE)).json()
    assert ip["status"] == "draft"
    assert codes((await careplans.read(forlop_ref, by=BVT)).json()) == ["samtykke"]

    async def told() -> bool:
        lost = [*await plan_events(careplans, draft_ref, "consent-lost"),
                *await plan_events(careplans, forlop_ref, "consent-lost")]  # fmt: skip
        return len(lost) == 2

    await wait_for(told)
    [event] = await plan_events(careplans, forlop_ref, "consent-lost")
    assert event.data["purpose"] == "nasjonalt-forlop" and event.data["status"] == "on-hold"
