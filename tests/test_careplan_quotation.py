"""Quoting another record in a plan (DOMAIN §9, Gutt 8), through the public API on both
databases: barnevern's statement in its referral, quoted in BUP's treatment plan, keeps
barnevern as its author, under barnevern law, for every reader; a quotation the server
cannot prove is refused, alike for a source that does not exist and one the writer may not
read."""

from __future__ import annotations

import uuid
from typing import Any

from services.careplan.domain.vocabulary import PROVENANCE_EXT, QUOTATION_EXT
from tests.careplan_world import CarePlanWorld, goal, plan
from tests.referral_world import BUP, BVT, GP, KOMMUNE
from tests.support import wait_for

SUSPICION = "Kan være grunn til å tro at barnet er utsatt for vold av far"


def quoting(text: str, source: str, element: str | None = None) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"url": "source", "valueReference": {"reference": source}}]
    if element:
        parts.append({"url": "element", "valueString": element})
    return {"text": text, "extension": [{"url": QUOTATION_EXT, "extension": parts}]}


def origin(statement: dict[str, Any]) -> dict[str, Any]:
    stamp = next(e for e in statement["extension"] if e["url"] == PROVENANCE_EXT)
    found: dict[str, Any] = {}
    for part in stamp["extension"]:
        value = next(v for k, v in part.items() if k.startswith("value"))
        if isinstance(value, dict):  # an Identifier's value, a Reference's reference
            value = value.get("value") or value.get("reference")
        found[part["url"]] = value
    return found


async def test_gutt_8_a_quoted_suspicion_stays_barneverns(careplans: CarePlanWorld) -> None:
    world = careplans.world
    child = await world.child(age=8)
    referral = await world.submit(child, by=BVT, note=[{"text": SUSPICION}])
    await careplans.start_care(child, BUP)
    source = f"ServiceRequest/{referral.id}"
    treatment = plan(child, "behandlingsplan", status="active", regime="helse")
    treatment["note"] = [quoting(SUSPICION, source, "note[0]"), {"text": "Vurdering: angst"}]
    reply = await careplans.create(treatment, by=BUP)
    assert reply.status == 201, reply.body
    stored = reply.json()
    quoted, own = stored["note"]
    said = origin(quoted)
    assert (said["organization"], said["regime"], said["quotedBy"]) == (BVT, "barnevern", BUP)
    assert said["source"] == f"{source}/_history/1"
    assert (origin(own)["organization"], origin(own)["regime"]) == (BUP, "helse")
    plan_ref = f"CarePlan/{stored['id']}"

    # Every reader sees the same origin: BUP, and barnevern and the GP under consent.
    await careplans.consent(child, "informasjonsdeling", BVT, ("careplan",), by=BUP)
    await careplans.consent(child, "informasjonsdeling", GP, ("careplan",), by=BUP)
    for reader in (BUP, BVT, GP):
        read = await careplans.read(plan_ref, by=reader)
        assert read.status == 200, (reader, read.body)
        said = origin(read.json()["note"][0])
        assert (said["organization"], said["regime"]) == (BVT, "barnevern"), reader

    # Carried unchanged into the next version, the quotation keeps its origin.
    stored["note"].append({"text": "Plan: samtaler hver uke"})
    again = await careplans.put(plan_ref, stored, by=BUP)
    assert again.status == 200, again.body
    assert origin(again.json()["note"][0])["organization"] == BVT

    # A copy of the quoted note is a new statement: its quotation is proven again, by its
    # writer (the GP may read the plan, not barnevern's referral).
    copied = again.json()
    copied["note"].append(copied["note"][0])
    by_gp = await careplans.put(plan_ref, copied, by=GP)
    assert by_gp.status == 422, by_gp.body

    # A Goal may quote too: the referral's reason.
    aim = goal(child, "Angst og skolevegring over tid")
    aim["extension"] = quoting("x", source, "reasonCode[0]")["extension"]
    created = await careplans.create(aim, by=BUP)
    assert created.status == 201, created.body
    assert origin(created.json())["organization"] == BVT


async def test_a_quotation_the_server_cannot_prove_is_refused(careplans: CarePlanWorld) -> None:
    world = careplans.world
    child = await world.child(age=9)
    referral = await world.submit(child, by=BVT, note=[{"text": SUSPICION}])
    await careplans.start_care(child, BUP)
    source = f"ServiceRequest/{referral.id}"

    async def write(*notes: dict[str, Any]) -> Any:
        treatment = plan(child, "behandlingsplan", status="active", regime="helse")
        treatment["note"] = list(notes)
        return await careplans.create(treatment, by=BUP)

    invented = await write(quoting("Far har slått barnet", source))
    assert invented.status == 422, invented.body
    assert "not in" in invented.json()["issue"][0]["diagnostics"]
    elsewhere = await write(quoting(SUSPICION, source, "reasonCode[0]"))
    assert elsewhere.status == 422, elsewhere.body

    # Another child's referral, which BUP may not read, answers as one that does not exist.
    other = await world.child(age=10)
    hidden = await world.submit(other, by=GP, to=KOMMUNE, note=[{"text": SUSPICION}])
    made_up = str(uuid.uuid4())
    unreadable = await write(quoting(SUSPICION, f"ServiceRequest/{hidden.id}"))
    missing = await write(quoting(SUSPICION, f"ServiceRequest/{made_up}"))
    assert unreadable.status == missing.status == 422
    texts = [
        reply.json()["issue"][0]["diagnostics"].replace(ref, "<source>")
        for reply, ref in ((unreadable, hidden.id), (missing, made_up))
    ]
    assert texts[0] == texts[1], texts
    # A record about another child, though BUP may read it, is not a source.
    sibling = await world.child(age=7)
    theirs = await world.submit(sibling, by=BVT, note=[{"text": SUSPICION}])
    assert (await world.fhir("GET", f"ServiceRequest/{theirs.id}", by=BUP)).status == 200
    crossed = await write(quoting(SUSPICION, f"ServiceRequest/{theirs.id}"))
    assert crossed.status == 422, crossed.body
    assert "not about the same child" in crossed.json()["issue"][0]["diagnostics"]
    # A claimed provenance without a quotation is the writer's own, as always.
    forged = {"text": SUSPICION, "extension": [{"url": PROVENANCE_EXT, "extension": [
        {"url": "organization", "valueIdentifier": {
            "system": "urn:oid:2.16.578.1.12.4.1.4.101", "value": BVT}}]}]}  # fmt: skip
    own = await write(forged)
    assert own.status == 201, own.body
    assert origin(own.json()["note"][0])["organization"] == BUP


async def test_what_a_child_keeps_from_its_parents_is_not_quoted_out_of_the_mark(
    careplans: CarePlanWorld,
) -> None:
    """A 13-year-old confides in BUP (pbrl §3-4 second ledd); BUP refers it on to the
    municipal health service. BUP may quote its own referral into its own plan; the
    municipality, outside the mark, may not carry BUP's words into a plan the parents read."""
    world = careplans.world
    child = await world.child(age=13)
    await world.start_care(child, BUP)
    confidential = {
        "patient": f"Patient/{child.id}", "purpose": "helsehjelp",
        "recipients": {"organizations": [BUP]}, "categories": ["referral", "careplan"],
        "confidential_from_parents": True,
        "signatures": [{"grantor": f"Patient/{child.id}", "decision": "consent",
                        "method": "in-person", "collected_by": "Lege Li"}],
    }  # fmt: skip
    reply = await world.consent_api("POST", "consents", confidential, by=BUP)
    assert reply.status == 201 and reply.json()["status"] == "active", reply.body
    view = careplans.careplan.consent_view
    assert view is not None

    async def marked() -> bool:
        state = view.state(child.id)
        return state is not None and bool(state.hidden_from_parents)

    await wait_for(marked, 5)
    referral = await world.submit(child, by=BUP, to=KOMMUNE, note=[{"text": "Selvskading"}])
    source = f"ServiceRequest/{referral.id}"
    outside = plan(child, "behandlingsplan", status="active", regime="helse")
    outside["note"] = [quoting("Selvskading", source, "note[0]")]
    refused = await careplans.create(outside, by=KOMMUNE)
    assert refused.status == 422, refused.body
    assert "kept from the child's parents" in refused.json()["issue"][0]["diagnostics"]
    inside = plan(child, "behandlingsplan", status="active", regime="helse")
    inside["note"] = [quoting("Selvskading", source, "note[0]")]
    allowed = await careplans.create(inside, by=BUP)
    assert allowed.status == 201, allowed.body
    # Not even BUP carries it into a record of a category the child's consent does not
    # keep hidden (an individual plan), and no other record claims a quotation at all.
    individual = plan(child, "individuell-plan", regime="helse", complete=False)
    individual["note"] = [quoting("Selvskading", source, "note[0]")]
    other_category = await careplans.create(individual, by=BUP)
    assert other_category.status == 422, other_category.body
    aim = goal(child, "Trygg hverdag")
    aim["note"] = [quoting("Selvskading", source, "note[0]")]
    assert (await careplans.create(aim, by=BUP)).status == 422
