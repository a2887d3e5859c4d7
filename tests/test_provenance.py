"""FHIR Provenance of every statement (DOMAIN §9, Gutt 8), through the public API on both
databases: derived from the statements a caller may read, so it says who made each, when,
under which regime and what it quotes, and never more than its target; a target the caller
may not see answers exactly as a missing one."""

from __future__ import annotations

import uuid
from typing import Any

from shared.fhir.resources import ID_PATTERN
from tests.careplan_world import CarePlanWorld, goal, member, plan, team
from tests.referral_world import BUP, BVT, GP, KOMMUNE
from tests.test_careplan_quotation import SUSPICION, quoting

TARGET_PATH = "http://hl7.org/fhir/StructureDefinition/targetPath"
REGIME = "https://fhir.barnebro.no/StructureDefinition/legal-regime"


def entries(reply: Any, mode: str = "match") -> list[dict[str, Any]]:
    assert reply.status == 200, reply.body
    return [e["resource"] for e in reply.json().get("entry", []) if e["search"]["mode"] == mode]


def author(provenance: dict[str, Any]) -> tuple[str, str | None]:
    who = next(a for a in provenance["agent"] if a["type"]["coding"][0]["code"] == "author")
    regime = next((e["valueCode"] for e in provenance.get("extension", [])
                   if e["url"] == REGIME), None)  # fmt: skip
    return who["who"]["identifier"]["value"], regime


def path(provenance: dict[str, Any]) -> str:
    return str(provenance["target"][0]["extension"][0]["valueString"])


async def test_gutt_8_each_reader_sees_who_said_it_as_provenance(
    careplans: CarePlanWorld,
) -> None:
    world = careplans.world
    child = await world.child(age=8)
    referral = await world.submit(child, by=BVT, note=[{"text": SUSPICION}])
    await careplans.start_care(child, BUP)
    source = f"ServiceRequest/{referral.id}"
    treatment = plan(child, "behandlingsplan", status="active", regime="helse")
    treatment["note"] = [quoting(SUSPICION, source, "note[0]"), {"text": "Vurdering: angst"}]
    created = await careplans.create(treatment, by=BUP)
    assert created.status == 201, created.body
    plan_ref = f"CarePlan/{created.json()['id']}"
    await careplans.consent(child, "informasjonsdeling", BVT, ("careplan",), by=BUP)
    await careplans.consent(child, "informasjonsdeling", GP, ("careplan",), by=BUP)

    for reader in (BUP, BVT, GP):
        found = entries(await world.fhir("GET", f"Provenance?target={plan_ref}", by=reader))
        by_path = {path(p): p for p in found}
        quoted = by_path["CarePlan.note[0]"]
        assert author(quoted) == (BVT, "barnevern"), reader
        assert quoted["entity"][0]["role"] == "quotation"
        assert quoted["entity"][0]["what"]["reference"] == f"{source}/_history/1"
        assert author(by_path["CarePlan.note[1]"]) == (BUP, "helse"), reader
        read = await world.fhir("GET", f"Provenance/{quoted['id']}", by=reader)
        assert read.status == 200 and read.json() == quoted, read.body
        with_plans = await world.fhir(
            "GET", f"CarePlan?_id={created.json()['id']}&_revinclude=Provenance:target", by=reader
        )
        assert {p["id"] for p in entries(with_plans, "include")} == set(p["id"] for p in found), (
            reader
        )
        links = {link["relation"]: link["url"] for link in with_plans.json()["link"]}
        assert "_revinclude=Provenance%3Atarget" in links["self"], links

    # A search's answer says what was searched, as any search's does, in the same type.
    searched = await world.fhir("GET", f"Provenance?target={plan_ref}", by=BUP)
    assert searched.headers["Content-Type"] == "application/fhir+json; charset=utf-8"
    self_link = next(link["url"] for link in searched.json()["link"] if link["relation"] == "self")
    assert self_link.endswith(f"/Provenance?target={plan_ref.replace('/', '%2F')}"), self_link

    # The referral's own statements are barnevern's, the requester's; BUP reads them.
    referral_provenance = entries(await world.fhir("GET", f"Provenance?target={source}", by=BUP))
    note = next(p for p in referral_provenance if path(p) == "ServiceRequest.note[0]")
    assert author(note) == (BVT, "barnevern")
    by_child = entries(await world.fhir("GET", f"Provenance?patient=Patient/{child.id}", by=BUP))
    assert {p["id"] for p in found} | {note["id"]} <= {p["id"] for p in by_child}
    # Every id is a FHIR id (at most 64 characters), also a referral's reasons'.
    assert any(path(p).startswith("ServiceRequest.reasonCode[") for p in referral_provenance)
    for provenance in found + referral_provenance + by_child:
        assert ID_PATTERN.fullmatch(provenance["id"]), provenance["id"]


async def test_provenance_never_says_more_than_its_target(careplans: CarePlanWorld) -> None:
    world = careplans.world
    child = await world.child(age=9)
    referral = await world.submit(child, by=GP, to=KOMMUNE, note=[{"text": "Hodepine"}])
    hidden = f"ServiceRequest/{referral.id}"
    assert (await world.fhir("GET", hidden, by=BUP)).status == 404
    answer = entries(await world.fhir("GET", f"Provenance?target={hidden}", by=BUP))
    made_up = entries(
        await world.fhir("GET", f"Provenance?target=ServiceRequest/{uuid.uuid4()}", by=BUP)
    )
    assert answer == made_up == []
    seen = entries(await world.fhir("GET", f"Provenance?target={hidden}", by=KOMMUNE))
    assert seen, "the receiver sees it"
    own = await world.fhir("GET", f"Provenance/{seen[0]['id']}", by=BUP)
    missing_id = seen[0]["id"].replace(referral.id, str(uuid.uuid4()))
    missing = await world.fhir("GET", f"Provenance/{missing_id}", by=BUP)
    assert own.status == missing.status == 404
    assert own.json()["issue"][0]["diagnostics"].replace(seen[0]["id"], "x") == missing.json()[
        "issue"
    ][0]["diagnostics"].replace(missing_id, "x")
    written = await world.fhir("POST", "Provenance", seen[0], by=KOMMUNE)
    assert written.status == 405, written.body
    # In a transaction as on its own: a write is 405; a read is sent alone or in a batch.
    for method, url in (("POST", "Provenance"), ("PUT", "Provenance/Goal.x.1.self")):
        entry = {"resource": seen[0], "request": {"method": method, "url": url}}
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
        in_transaction = await world.fhir("POST", "", bundle, by=KOMMUNE)
        assert in_transaction.status == 405, in_transaction.body
        assert in_transaction.json()["issue"][0]["diagnostics"].startswith("Bundle.entry[0]: ")
    read = {"request": {"method": "GET", "url": f"Provenance?target={hidden}"}}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [read]}
    assert (await world.fhir("POST", "", bundle, by=KOMMUNE)).status == 400
    bundle["type"] = "batch"
    in_batch = (await world.fhir("POST", "", bundle, by=KOMMUNE)).json()
    assert in_batch["entry"][0]["response"]["status"] == "200"
    bad = await world.fhir("GET", "Provenance?agent=x", by=KOMMUNE)
    assert bad.status == 400, bad.body


async def test_provenance_needs_the_scope_of_its_target(careplans: CarePlanWorld) -> None:
    world = careplans.world
    child = await world.child(age=10)
    referral = await world.submit(child, by=GP, to=KOMMUNE, note=[{"text": "Hodepine"}])
    only = world.token(KOMMUNE, scope="system/Provenance.rs")
    reply = await world.fhir(
        "GET", f"Provenance?target=ServiceRequest/{referral.id}", by=KOMMUNE, token=only
    )
    assert reply.status == 403, reply.body
    both = world.token(KOMMUNE, scope="system/Provenance.rs system/ServiceRequest.rs")
    reply = await world.fhir(
        "GET", f"Provenance?target=ServiceRequest/{referral.id}", by=KOMMUNE, token=both
    )
    assert reply.status == 200 and reply.json()["total"] >= 1, reply.body


async def test_a_care_teams_reasons_and_a_goals_notes_are_statements_too(
    careplans: CarePlanWorld,
) -> None:
    world = careplans.world
    child = await world.child(age=11)
    await careplans.start_care(child, BUP)
    made = team(child, member(BUP, "behandler"))
    made["reasonCode"] = [{"text": "Angst og skolevegring"}]
    made["note"] = [{"text": "Møtes hver fjerde uke"}]
    team_ref = await careplans.created(made, by=BUP)
    aim = goal(child, "Trygg skolehverdag")
    aim["note"] = [{"text": "Eleven ønsker færre møter"}]
    goal_ref = await careplans.created(aim, by=BUP)
    for target, paths in (
        (team_ref, {"CareTeam.reasonCode[0]", "CareTeam.note[0]"}),
        (goal_ref, {"Goal", "Goal.note[0]"}),
    ):
        found = entries(await world.fhir("GET", f"Provenance?target={target}", by=BUP))
        assert {path(p) for p in found} == paths, found
        assert {author(p) for p in found} == {(BUP, "helse")}


async def test_revincluded_provenance_needs_its_own_scope_and_whole_statements(
    careplans: CarePlanWorld,
) -> None:
    world = careplans.world
    child = await world.child(age=12)
    await careplans.start_care(child, BUP)
    aim = await careplans.created(goal(child, "Sove bedre"), by=BUP)
    query = f"Goal?_id={aim.split('/')[1]}&_revinclude=Provenance:target"
    narrow = world.token(BUP, scope="system/Goal.rs")
    refused = await world.fhir("GET", query, by=BUP, token=narrow)
    assert refused.status == 403, refused.body
    assert (await world.fhir("GET", f"{query}&_summary=true", by=BUP)).status == 400
    assert entries(await world.fhir("GET", query, by=BUP), "include")


async def test_a_quotation_may_name_the_version_it_quotes_and_names_the_person(
    careplans: CarePlanWorld,
) -> None:
    world = careplans.world
    child = await world.child(age=8)
    referral = await world.submit(child, by=BVT, note=[{"text": SUSPICION}])
    await careplans.start_care(child, BUP)
    source = f"ServiceRequest/{referral.id}/_history/1"
    treatment = plan(child, "behandlingsplan", status="active", regime="helse")
    treatment["note"] = [quoting(SUSPICION, source, "note[0]")]
    token = world.token(BUP, hpr="9144889")
    reply = await world.fhir("POST", "CarePlan", treatment, by=BUP, token=token)
    assert reply.status == 201, reply.body
    target = f"CarePlan/{reply.json()['id']}"
    found = entries(await world.fhir("GET", f"Provenance?target={target}", by=BUP))
    quoted = next(p for p in found if path(p) == "CarePlan.note[0]")
    assert quoted["entity"][0]["what"]["reference"] == source
    enterers = {a["who"]["identifier"]["value"] for a in quoted["agent"]
                if a["type"]["coding"][0]["code"] == "enterer"}  # fmt: skip
    assert enterers == {BUP, "9144889"}
