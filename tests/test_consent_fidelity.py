"""The consent cases a lawyer would bring (DOMAIN §4), through the public API on both
databases: what a child keeps from its parents stays kept from whoever the parents (or a
care-order holder) name, the youth's own voice from 15 when health shares with barnevern,
consents the child gave itself outliving a birthday, Nasjonalt forløp, answers recorded
once, and refusals that a plain FHIR client reads as refusals."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from services.consent.authority_watch import AuthorityWatch
from services.consent.records import VALID_UNTIL_EXT
from tests.consent_world import BUP, BVT, GP, HEARD, SKOLE, Child, World, signature
from tests.support import wait_for


def notes_of(child: Child) -> str:
    return f"DocumentReference?patient={child.ref}&_total=accurate"


def confidential(child: Child) -> dict[str, Any]:
    """The child's own consent to BUP's help, which the parents are not to be told of."""
    return {
        "patient": child.ref,
        "purpose": "helsehjelp",
        "recipients": {"organizations": [BUP]},
        "categories": ["journal"],
        "confidential_from_parents": True,
        "signatures": [signature(child.ref)],
    }


def to_barnevern(child: Child, *signatures: dict[str, Any], **more: Any) -> dict[str, Any]:
    """BUP shares its journal with the barnevernstjeneste (not mandatory: no §33)."""
    return {
        "patient": child.ref,
        "purpose": "informasjonsdeling",
        "recipients": {"organizations": [BVT]},
        "categories": ["journal"],
        "signatures": list(signatures),
        **more,
    }


async def watch_sweep(world: World, day: date) -> None:
    watch = next(c for c in world.stack.consent.components if isinstance(c, AuthorityWatch))
    handlers = watch._handlers
    handlers.clock = lambda: day
    try:
        await watch.sweep()
    finally:
        handlers.clock = date.today


async def consent_of(world: World, consent_id: str, by: str = BUP) -> dict[str, Any]:
    reply = await world.fhir("GET", f"Consent/{consent_id}", by=by)
    assert reply.status == 200, reply.body
    consent: dict[str, Any] = reply.json()
    return consent


async def test_parents_cannot_release_what_the_child_keeps_from_them(world: World) -> None:
    """pbrl §3-4 second ledd: a 13-year-old sees BUP without the parents knowing; the
    parents then consent to share journal information with the school and any GP. What
    BUP holds under the child's consent reaches neither, on a read or a search; what
    barnevern wrote does."""
    child = await world.child(13)
    await world.start_care(child, BUP)
    own = await world.api("POST", "consents", confidential(child), by=BUP)
    assert own.status == 201 and own.json()["status"] == "active", own.body
    kept = await world.note(child, "Samtaler om forholdet hjemme", by=BUP)
    shared = await world.note(child, "Bekymring for skolefravær", by=BVT)
    parents = {
        "patient": child.ref,
        "purpose": "informasjonsdeling",
        "recipients": {"organizations": [SKOLE], "kinds": ["fastlege"]},
        "categories": ["journal"],
        "signatures": [signature(child.mother), signature(child.father)],
        "child_view": HEARD,
    }
    granted = await world.api("POST", "consents", parents)
    assert granted.status == 201 and granted.json()["status"] == "active", granted.body

    async def school_reads_barnevern() -> bool:
        return (await world.fhir("GET", shared, by=SKOLE)).status == 200

    await wait_for(school_reads_barnevern, 5)
    assert (await world.fhir("GET", kept, by=SKOLE)).status == 404
    assert (await world.fhir("GET", kept, by=GP)).status == 404
    for reader in (SKOLE, GP):
        found = (await world.fhir("GET", notes_of(child), by=reader)).json()
        assert found["total"] == 1, found
        assert [e["resource"]["id"] for e in found["entry"]] == [shared.partition("/")[2]]
    mother = world.token(SKOLE, fhir_user=child.mother)
    assert (await world.fhir("GET", kept, by=SKOLE, token=mother)).status == 404
    assert (await world.fhir("GET", shared, by=SKOLE, token=mother)).status == 200
    # Asked why, the school is told what it would be told if the child had no secret: the
    # explanation never reveals that BUP holds something kept from the parents.
    auditor = world.token(SKOLE, scope="system/*.cruds system/AuditEvent.rs")
    answers = []
    for author in (BUP, BVT):
        question = {"actor": {"orgnr": SKOLE, "kind": "skole"}, "patient": child.ref,
                    "category": "journal", "author": author}  # fmt: skip
        decision = await world.api("POST", "decisions", question, token=auditor)
        assert decision.status == 200, decision.body
        answers.append({k: decision.json()[k] for k in ("permit", "basis", "consents")})
    assert answers[0] == answers[1], answers
    assert own.json()["id"] not in str(answers)


async def test_a_care_order_holder_cannot_release_it_either(world: World) -> None:
    """Under a care order the barnevernstjeneste consents on the child's behalf; it can no
    more pass on what the child keeps from the parents than they could."""
    child = await world.child(14, care_order=True)
    await world.start_care(child, BUP)
    own = await world.api("POST", "consents", confidential(child), by=BUP)
    assert own.status == 201 and own.json()["status"] == "active", own.body
    kept = await world.note(child, "Samtaler", by=BUP)
    mine = await world.note(child, "Plassering", by=BVT)
    holder = {
        "patient": child.ref,
        "purpose": "informasjonsdeling",
        "recipients": {"organizations": [SKOLE]},
        "categories": ["journal"],
        "signatures": [signature(f"Organization/{world.organisations[BVT]}")],
        "child_view": HEARD,
    }
    granted = await world.api("POST", "consents", holder)
    assert granted.status == 201 and granted.json()["status"] == "active", granted.body

    async def school_reads() -> bool:
        return (await world.fhir("GET", mine, by=SKOLE)).status == 200

    await wait_for(school_reads, 5)
    assert (await world.fhir("GET", kept, by=SKOLE)).status == 404
    assert (await world.fhir("GET", notes_of(child), by=SKOLE)).json()["total"] == 1


async def test_a_15_year_old_must_consent_to_health_sharing_with_barnevern(world: World) -> None:
    """Non-mandatory contact from health to barnevern needs the youth's consent from 15
    as well as the parents'; the youth's refusal is its own record and blocks."""
    child = await world.child(15)
    await world.start_care(child, BUP)
    asked = await world.api(
        "GET", f"authority?patient={child.ref}&purpose=informasjonsdeling&to_barnevern=true",
        by=BUP,
    )  # fmt: skip
    assert asked.status == 200, asked.body
    assert asked.json()["rule"] == "barnevern-sharing-from-15"
    roles = [group["role"] for group in asked.json()["grantors"]]
    assert roles == ["child", "parents"], asked.json()
    parents = to_barnevern(child, signature(child.mother), signature(child.father))
    proposed = await world.api("POST", "consents", parents, by=BUP)
    assert proposed.status == 201, proposed.body
    outcome = proposed.json()
    assert outcome["status"] == "proposed", outcome
    assert any(child.ref in missing for missing in outcome["missing"]), outcome["missing"]
    objection = {"statement": "Jeg vil ikke at barnevernet skal vite", "heard_by": "Lege Li"}
    refused = await world.api("POST", f"consents/{outcome['id']}/objections", objection, by=BUP)
    assert refused.status == 200, refused.body
    assert refused.json()["status"] == "rejected"
    assert any(child.ref in reason and "refused" in reason for reason in refused.json()["reasons"])
    stored = await consent_of(world, outcome["id"])
    assert stored["provision"]["type"] == "deny"
    assert stored["performer"] == [{"reference": child.ref}]
    # The youth answering for itself through the signature route is accepted too.
    again = await world.api("POST", "consents", parents, by=BUP)
    youth = await world.api(
        "POST", f"consents/{again.json()['id']}/signatures", signature(child.ref, "refuse"),
        by=BUP,
    )  # fmt: skip
    assert youth.status == 200 and youth.json()["status"] == "rejected", youth.body
    agreed = await world.api(
        "POST",
        "consents",
        to_barnevern(child, signature(child.ref), signature(child.mother), signature(child.father)),
        by=BUP,
    )
    assert agreed.status == 201 and agreed.json()["status"] == "active", agreed.body


async def test_nasjonalt_forlop_takes_the_childs_signature_as_its_view(world: World) -> None:
    child = await world.child(14)
    body = {
        "patient": child.ref,
        "purpose": "nasjonalt-forlop",
        "recipients": {"kinds": ["bup"]},
        "categories": ["journal"],
        "signatures": [signature(child.ref), signature(child.mother), signature(child.father)],
    }
    reply = await world.api("POST", "consents", body)
    assert reply.status == 201, reply.body
    assert reply.json()["status"] == "active", reply.json()
    assert reply.json()["missing"] == []


async def test_a_consent_the_child_gave_itself_outlives_the_birthday(world: World) -> None:
    """Confidential help at 15 (16 tomorrow) and Nasjonalt forløp at 14 (15 tomorrow): the
    same person stays entitled, so the consent neither carries an end nor ends."""
    turning_16 = await world.child(16, days=1)
    await world.start_care(turning_16, BUP)
    confidential_consent = await world.api("POST", "consents", confidential(turning_16), by=BUP)
    turning_15 = await world.child(15, days=1)
    forlop = {
        "patient": turning_15.ref,
        "purpose": "nasjonalt-forlop",
        "recipients": {"kinds": ["bup"]},
        "categories": ["journal"],
        "signatures": [signature(turning_15.ref), signature(turning_15.mother),
                       signature(turning_15.father)],
    }  # fmt: skip
    forlop_consent = await world.api("POST", "consents", forlop)
    for reply, child in ((confidential_consent, turning_16), (forlop_consent, turning_15)):
        assert reply.status == 201 and reply.json()["status"] == "active", reply.body
        assert reply.json()["consent"]["valid_until"] is None, reply.json()
        stored = await consent_of(world, reply.json()["id"], by=BVT if child is turning_15 else BUP)
        assert not [e for e in stored.get("extension", []) if e["url"] == VALID_UNTIL_EXT]
    await watch_sweep(world, date.today() + timedelta(days=1))
    for reply in (confidential_consent, forlop_consent):
        by = BUP if reply is confidential_consent else BVT
        assert (await consent_of(world, reply.json()["id"], by=by))["status"] == "active"

    async def grants_open() -> bool:
        view = world.journal.consent_view
        assert view is not None
        state = view.state(turning_15.id)
        return state is not None and bool(state.grants) and state.grants[0].end is None

    await wait_for(grants_open, 5)


async def test_answers_are_recorded_on_their_own_and_counted_once(world: World) -> None:
    """The child's view and the hearing of the other parent have their own calls; no
    grantor signs again, and a repeated answer is merged."""
    child = await world.child(10)
    body = {
        "patient": child.ref,
        "purpose": "helsehjelp",
        "categories": ["journal"],
        "daily_care": True,
        "signatures": [signature(child.mother)],
    }
    created = await world.api("POST", "consents", body)
    assert created.status == 201 and created.json()["status"] == "proposed", created.body
    consent_id = created.json()["id"]
    heard = await world.api("POST", f"consents/{consent_id}/hearings", {"parent": child.father})
    assert heard.status == 200, heard.body
    assert heard.json()["status"] == "proposed"
    assert not any(child.father in missing for missing in heard.json()["missing"])
    view = await world.api("POST", f"consents/{consent_id}/child-view", HEARD)
    assert view.status == 200, view.body
    assert view.json()["status"] == "active", view.json()
    stored = await consent_of(world, consent_id, by=BVT)
    repeated = await world.api(
        "POST", f"consents/{consent_id}/objections",
        {"statement": "Vil ikke", "heard_by": "Lege Li"},
    )  # fmt: skip
    assert repeated.status == 409, "answers are recorded while the consent is proposed"
    signatures = [e for e in stored["extension"] if e["url"].endswith("/consent-signature")]
    assert len(signatures) == 1
    assert stored["verification"][0]["verifiedWith"] == {"reference": child.mother}
    assert stored["verification"][0]["extension"][0]["url"].endswith("/consent-collection")

    again = await world.api("POST", "consents", {**body, "daily_care": False})
    twice = await world.api(
        "POST", f"consents/{again.json()['id']}/signatures", signature(child.mother)
    )
    assert twice.status == 200, twice.body
    after = await consent_of(world, again.json()["id"], by=BVT)
    assert after["meta"]["versionId"] == "1", "the same answer again is not a new version"
    assert len([e for e in after["extension"] if e["url"].endswith("/consent-signature")]) == 1
    doubled = await world.api(
        "POST", "consents", {**body, "signatures": [signature(child.mother)] * 2}
    )
    assert doubled.status == 400, doubled.body
    misplaced = await world.api(
        "POST", f"consents/{again.json()['id']}/hearings", {"parent": child.father}
    )
    assert misplaced.status == 422, "both parents must consent: nobody is merely heard"


async def test_only_the_collector_records_answers_and_the_child_view_of_a_grantor(
    world: World,
) -> None:
    child = await world.child(13)
    await world.start_care(child, BUP)
    created = await world.api("POST", "consents", sharing_proposed(child))
    consent_id = created.json()["id"]
    other = await world.api("POST", f"consents/{consent_id}/child-view", HEARD, by=BUP)
    assert other.status in (403, 404), other.body
    youth = await world.child(15)
    await world.start_care(youth, BUP)
    proposed = await world.api(
        "POST", "consents", to_barnevern(youth, signature(youth.mother)), by=BUP
    )
    view = await world.api("POST", f"consents/{proposed.json()['id']}/child-view", HEARD, by=BUP)
    assert view.status == 422, view.body


def sharing_proposed(child: Child) -> dict[str, Any]:
    return {
        "patient": child.ref,
        "purpose": "informasjonsdeling",
        "recipients": {"organizations": [GP]},
        "categories": ["journal"],
        "signatures": [signature(child.mother)],
    }


async def test_every_way_of_reaching_barnevern_needs_the_youth_from_15(world: World) -> None:
    """Whatever the purpose, and whether barnevern is named by organisation, by kind or
    reached through a care role its staff may hold, a 15-year-old must consent too; a
    parents' consent at 14 ends on the 15th birthday."""
    child = await world.child(15)
    await world.start_care(child, BUP)
    parents = [signature(child.mother), signature(child.father)]
    for recipients, purpose in (
        ({"organizations": [BVT]}, "helsehjelp"),
        ({"kinds": ["barnevernstjeneste"]}, "ansvarsgruppe"),
        ({"roles": ["koordinator"]}, "informasjonsdeling"),
        ({"roles": ["barnevernansvarlig"]}, "individuell-plan"),
    ):
        body = {"patient": child.ref, "purpose": purpose, "recipients": recipients,
                "categories": ["referral"], "signatures": parents}  # fmt: skip
        reply = await world.api("POST", "consents", body, by=BUP)
        assert reply.status == 201, reply.body
        assert reply.json()["status"] == "proposed", (recipients, purpose, reply.json())
        assert any(child.ref in missing for missing in reply.json()["missing"])
    younger = await world.child(15, days=30)  # 14 now, 15 in 30 days
    await world.start_care(younger, BUP)
    body = to_barnevern(younger, signature(younger.mother), signature(younger.father),
                        child_view=HEARD)  # fmt: skip
    reply = await world.api("POST", "consents", body, by=BUP)
    assert reply.status == 201 and reply.json()["status"] == "active", reply.body
    turns_15 = date.today() + timedelta(days=30)
    assert reply.json()["consent"]["valid_until"] == (turns_15 - timedelta(days=1)).isoformat()


async def test_parents_keep_their_own_consents_when_the_child_confides_in_the_recipient(
    world: World,
) -> None:
    """The parents' consent naming BUP stays theirs to read and withdraw after the child
    (13) consents alone to BUP's help; only the child's own consent is kept from them."""
    child = await world.child(13)
    await world.start_care(child, BUP)
    parents = {
        "patient": child.ref,
        "purpose": "informasjonsdeling",
        "recipients": {"organizations": [BUP]},
        "categories": ["careteam"],
        "signatures": [signature(child.mother), signature(child.father)],
        "child_view": HEARD,
    }
    theirs = await world.api("POST", "consents", parents)
    assert theirs.status == 201 and theirs.json()["status"] == "active", theirs.body
    own = await world.api("POST", "consents", confidential(child), by=BUP)
    assert own.status == 201 and own.json()["status"] == "active", own.body
    mother = world.token(SKOLE, fhir_user=child.mother)

    async def settled() -> bool:
        hidden = await world.fhir("GET", f"Consent/{own.json()['id']}", by=SKOLE, token=mother)
        return hidden.status == 404

    await wait_for(settled, 5)
    seen = await world.fhir("GET", f"Consent/{theirs.json()['id']}", by=SKOLE, token=mother)
    assert seen.status == 200, "the parents' own consent stays theirs to read"
    listed = await world.fhir("GET", f"Consent?patient={child.ref}", by=SKOLE, token=mother)
    found = {e["resource"]["id"] for e in listed.json().get("entry", [])}
    assert found == {theirs.json()["id"]}, found
    withdrawn = await world.api(
        "POST", f"consents/{theirs.json()['id']}/withdrawal", {"by": child.mother}, token=mother
    )
    assert withdrawn.status == 200, withdrawn.body
