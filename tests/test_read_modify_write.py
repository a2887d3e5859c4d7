"""A naive client's update of every type a client writes: read the resource, change one
element, and PUT the whole of it back, with what the server keeps (meta, derived
extensions, stamps, the step of a referral) sent back unchanged. This is what fhirpy's
`save()` does; each must go through, and what the server keeps stays the server's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.careplan_world import CarePlanWorld, goal, member, plan, team, with_reason
from tests.referral_world import BUP, GP, KOMMUNE, ReferralWorld
from tests.subscription_world import SubscriptionWorld, subscription
from tests.support import Stack

Change = Callable[[dict[str, Any]], None]


async def saved(stack: Stack, reference: str, token: str, change: Change) -> dict[str, Any]:
    """GET `reference`, apply `change`, PUT it all back with If-Match; the stored result."""
    got = await stack.call("GET", reference, token=token)
    assert got.status == 200, got.body
    resource = got.json()
    change(resource)
    headers = {"If-Match": got.headers["ETag"]}
    reply = await stack.call("PUT", reference, resource, token=token, headers=headers)
    assert reply.status == 200, (reference, reply.body)
    stored: dict[str, Any] = reply.json()
    assert int(stored["meta"]["versionId"]) == int(resource["meta"]["versionId"]) + 1
    return stored


def setting(key: str, value: Any) -> Change:
    def change(resource: dict[str, Any]) -> None:
        resource[key] = value

    return change


async def test_organization(referrals: ReferralWorld) -> None:
    stack = referrals.stack
    reference = f"Organization/{referrals.organisations[KOMMUNE]}"
    stored = await saved(stack, reference, stack.operator_token(), setting("alias", ["Helse"]))
    assert stored["alias"] == ["Helse"]


async def test_directory_records(referrals: ReferralWorld) -> None:
    """Practitioner, PractitionerRole and HealthcareService, by the organisation that
    registered them."""
    organization = {"reference": f"Organization/{referrals.organisations[BUP]}"}
    records: list[dict[str, Any]] = [
        {"resourceType": "Practitioner", "name": [{"family": "Hansen"}]},
        {"resourceType": "PractitionerRole", "organization": organization},
        {"resourceType": "HealthcareService", "name": "Poliklinikk", "providedBy": organization},
    ]
    for resource in records:
        created = await referrals.fhir("POST", resource["resourceType"], resource, by=BUP)
        assert created.status == 201, created.body
        reference = f"{resource['resourceType']}/{created.json()['id']}"
        stored = await saved(
            referrals.stack, reference, referrals.token(BUP), setting("active", False)
        )
        assert stored["active"] is False


async def test_patient_and_related_person(referrals: ReferralWorld) -> None:
    child = await referrals.child()
    await referrals.start_care(child, GP)
    name = [{"family": "Nordmann", "given": ["Ola", "Kari"]}]
    stored = await saved(referrals.stack, f"Patient/{child.id}", referrals.token(GP),
                         setting("name", name))  # fmt: skip
    assert stored["name"] == name
    register = referrals.stack.register_token()
    parent = await saved(referrals.stack, child.parents[0], register,
                         setting("gender", "female"))  # fmt: skip
    assert parent["gender"] == "female"


async def test_referral_task_service_request_and_attachment(referrals: ReferralWorld) -> None:
    child = await referrals.child()
    referral = await referrals.submit(child)
    task = await saved(
        referrals.stack, f"Task/{referral.task_id}", referrals.token(BUP),
        setting("status", "received"),
    )  # fmt: skip
    assert task["status"] == "received"
    assert task["businessStatus"]["coding"][0]["code"] == "mottatt"
    # The step sent back as stored, with the status unchanged, keeps it.
    note = [{"text": "Ringt foreldrene"}]
    again = await saved(
        referrals.stack, f"Task/{referral.task_id}", referrals.token(BUP), setting("note", note)
    )
    assert again["businessStatus"] == task["businessStatus"]
    assert again["note"] == note
    stored = await saved(
        referrals.stack, referral.ref, referrals.token(GP),
        setting("note", [{"text": "Foreldrene vil helst ha time etter skoletid"}]),
    )  # fmt: skip
    assert stored["note"][0]["text"].startswith("Foreldrene")
    attachment = referral.response["resource"]["supportingInfo"][0]["reference"]
    described = await saved(
        referrals.stack, attachment, referrals.token(GP), setting("description", "Oppdatert")
    )
    assert described["description"] == "Oppdatert"


async def test_care_plan_goal_and_care_team(careplans: CarePlanWorld) -> None:
    world = careplans.world
    child = await world.child(age=12)
    await careplans.consent(child, "ansvarsgruppe", BUP, ("careteam",), by=KOMMUNE)
    token = world.token(KOMMUNE)
    goal_ref = await careplans.created(goal(child), by=KOMMUNE)
    stored = await saved(world.stack, goal_ref, token, setting("priority", {"text": "høy"}))
    assert stored["priority"] == {"text": "høy"}
    team_ref = await careplans.created(team(child, member(KOMMUNE, "koordinator")), by=KOMMUNE)
    stored = await saved(world.stack, team_ref, token, setting("name", "Ansvarsgruppe"))
    assert stored["name"] == "Ansvarsgruppe"
    plan_ref = await careplans.created(
        plan(child, goals=(goal_ref,), care_team=team_ref), by=KOMMUNE
    )

    def retitled(resource: dict[str, Any]) -> None:
        # An individual plan's change says why (a client's statement, not the server's).
        resource.update(with_reason(resource, "Nytt skoleår"), title="Plan for skoleåret")

    stored = await saved(world.stack, plan_ref, token, retitled)
    assert stored["title"] == "Plan for skoleåret"
    # Its activities' stamps and the derived extensions went back as they were stored.
    again = await saved(world.stack, plan_ref, token, retitled)
    assert again["activity"] == stored["activity"]


async def test_subscription(subscriptions: SubscriptionWorld) -> None:
    world = subscriptions.referrals
    body = subscription("referral-status", endpoint="https://partner.example/hook")
    sub_id = await subscriptions.subscribe(body, by=BUP)
    stored = await saved(
        world.stack, f"Subscription/{sub_id}", world.token(BUP), setting("reason", "Nytt formål")
    )
    assert stored["reason"] == "Nytt formål"
