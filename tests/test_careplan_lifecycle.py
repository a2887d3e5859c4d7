"""An individual plan's life over HTTP: one open plan per child (also when two writers
create at once, and without telling a caller that may not read it which plan it is)."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

from services.careplan.domain.lifecycle import ONE_PER_PERSON
from shared.access.decision import purpose_consents
from tests.careplan_world import CarePlanWorld, goal, member, person, plan, team, with_reason
from tests.referral_world import BUP, GP, KOMMUNE, Child
from tests.support import wait_for


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
