"""Consent scenarios of DOMAIN §4, end to end against the running stack (gateway,
directory, consent service and the journal test service, on real NATS and both
databases): care orders and their end, a child's confidential consent, daily care,
the 16th birthday, leaks through every read path, emergency access, the audit trail,
hpl §33 disclosures, missing birth dates, bad input, concurrent signatures, the OpenAPI
document and Nasjonalt forløp."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Any

from shared.identifiers import HPR_SYSTEM, ORGNR_SYSTEM
from tests.consent_world import (
    BUP,
    BVT,
    GP,
    HEARD,
    LEGEVAKT,
    SKOLE,
    Child,
    World,
    born_years_ago,
    sharing,
    signature,
)
from tests.support import Reply, diagnostics, stream_events, wait_for

AUDIT_SCOPE = "system/AuditEvent.rs"
EMERGENCY_PATIENT = "Barnebro-Emergency-Patient"
EMERGENCY_REASON = "Barnebro-Emergency-Reason"


def notes_of(child: Child) -> str:
    return f"DocumentReference?patient={child.ref}&_total=accurate"


def ids(reply: Reply, mode: str | None = "match") -> list[str]:
    """`Type/id` of a Bundle's entries (of one search mode, or all with None)."""
    assert reply.status == 200, reply.body
    return [
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in reply.json().get("entry", [])
        if "resource" in e
        and e["resource"]["resourceType"] != "OperationOutcome"
        and (mode is None or e.get("search", {}).get("mode") == mode)
    ]


def bvt_org(world: World) -> str:
    return f"Organization/{world.organisations[BVT]}"


async def granted(world: World, body: dict[str, Any], by: str = BVT) -> dict[str, Any]:
    reply = await world.api("POST", "consents", body, by=by)
    assert reply.status == 201, reply.body
    outcome: dict[str, Any] = reply.json()
    assert outcome["status"] == "active", outcome
    return outcome


async def listed(world: World, child: Child) -> list[dict[str, Any]]:
    reply = await world.api("GET", f"patients/{child.id}/consents")
    assert reply.status == 200, reply.body
    consents: list[dict[str, Any]] = reply.json()["consents"]
    return consents


async def until_status(
    world: World, note: str, by: str, status: int, limit: float = 2, token: str | None = None
) -> None:
    """Wait (consent state reaches services through a KV watch) until `by` reads `note`
    with `status`."""

    async def reached() -> bool:
        return (await world.fhir("GET", note, by=by, token=token)).status == status

    await wait_for(reached, limit)


async def event_types(world: World) -> list[tuple[str, str]]:
    return [(event.type, event.resource_id) for _, event in await stream_events(world.stack)]


# -- 1. care order ------------------------------------------------------------------------


async def test_the_barnevernstjeneste_holding_a_care_order_consents(world: World) -> None:
    child = await world.child(14, care_order=True)
    authority = await world.api("GET", f"authority?patient={child.ref}&purpose=informasjonsdeling")
    assert authority.status == 200, authority.body
    answer = authority.json()
    assert (answer["decidable"], answer["rule"], answer["age"]) == (True, "care-order", 14)
    assert answer["grantors"] == [
        {"role": "care-order-holder", "members": [bvt_org(world)], "need": "one"}
    ]
    refused = await world.api(
        "POST", "consents", sharing(child, signature(child.mother), child_view=HEARD)
    )
    assert refused.status == 422, refused.body
    message = diagnostics(refused)
    assert child.mother in message
    assert "barnevernstjeneste holding it" in message and "not the parents" in message
    assert await listed(world, child) == [], "nothing is stored half-way"
    outcome = await granted(world, sharing(child, signature(bvt_org(world)), child_view=HEARD))
    assert outcome["consent"]["rule"] == "care-order"
    assert [s["grantor"] for s in outcome["consent"]["signatures"]] == [bvt_org(world)]


# -- 2. care order ending -----------------------------------------------------------------


async def test_a_care_order_ending_ends_the_consent_its_holder_gave(world: World) -> None:
    child = await world.child(14, care_order=True)
    note = await world.note(child, "Samvær", by=BVT)
    outcome = await granted(world, sharing(child, signature(bvt_org(world)), child_view=HEARD))
    consent_id = outcome["id"]
    await until_status(world, note, BUP, 200)

    patient = (await world.fhir("GET", child.ref, by=BVT)).json()
    yesterday = (date.today() - timedelta(days=1)).isoformat()
    patient["contact"] = [world.care_order(end=yesterday)]
    updated = await world.fhir("PUT", child.ref, patient, by=BVT)
    assert updated.status == 200, updated.body

    async def ended() -> bool:
        reply = await world.fhir("GET", f"Consent/{consent_id}", by=BVT)
        return reply.status == 200 and reply.json()["status"] == "inactive"

    await wait_for(ended, 5)
    [record] = await listed(world, child)
    assert (record["id"], record["status"]) == (consent_id, "inactive")
    assert record["effective_status"] == "inactive"
    assert record["ended_because"] == "authority-changed"
    await until_status(world, note, BUP, 404)

    async def announced() -> bool:
        return any(
            kind.endswith("authority-changed") and resource == consent_id
            for kind, resource in await event_types(world)
        )

    await wait_for(announced, 5, interval=0.2)
    authority = await world.api("GET", f"authority?patient={child.ref}&purpose=informasjonsdeling")
    assert authority.json()["rule"] == "parents"


# -- 3. a child's confidential consent ----------------------------------------------------


async def test_a_child_of_13_keeps_help_from_the_parents(world: World) -> None:
    child = await world.child(13)
    await world.start_care(child, BUP, "Kom alene til samtale")
    confidential = {
        "patient": child.ref,
        "purpose": "helsehjelp",
        "recipients": {"organizations": [BUP]},
        "categories": ["journal"],
        "confidential_from_parents": True,
        "signatures": [signature(child.ref)],
    }
    outcome = await granted(world, confidential, by=BUP)
    assert outcome["consent"]["rule"] == "child-confidential"
    assert outcome["consent"]["obligations"] == ["hide-from-parents"]
    assert outcome["authority"]["obligations"] == ["hide-from-parents"]
    bup_note = await world.note(child, "Samtale om angst", by=BUP)
    gp_note = await world.note(child, "Vaksinasjon", by=GP)
    mother = world.token(SKOLE, fhir_user=child.mother)

    question = {
        "actor": {"fhir_user": child.mother},
        "patient": child.ref,
        "category": "journal",
        "author": BUP,
    }

    # The organisation that holds what the child keeps hidden is told why; anyone else,
    # the parent or another organisation's audit role, gets the answer it would get if
    # the child's confidential consent did not exist.
    holder = world.token(BUP, scope="system/Consent.rs system/AuditEvent.rs")
    officer = world.token(BVT, scope="system/Consent.rs system/AuditEvent.rs")

    async def hidden() -> bool:
        decision = await world.api("POST", "decisions", question, token=holder)
        return bool(decision.json()["basis"] == "hidden-from-parents")

    await wait_for(hidden, 2)
    nosy = await world.api("POST", "decisions", question)
    assert nosy.status == 403, "asking about another actor needs the audit role"
    herself = await world.api("POST", "decisions", question, token=mother)
    assert herself.status == 200, herself.body
    elsewhere = {**question, "author": LEGEVAKT}
    other_author = await world.api("POST", "decisions", elsewhere, token=mother)
    unaware = ("permit", "basis", "consents", "reasons")
    assert [herself.json()[k] for k in unaware] == [other_author.json()[k] for k in unaware], (
        "the parent is not told that something is kept from her"
    )
    assert herself.json()["basis"] == "parental-responsibility"
    for_officer = await world.api("POST", "decisions", question, token=officer)
    assert for_officer.status == 200, for_officer.body
    assert f"Consent/{outcome['id']}" not in str(for_officer.json())
    assert for_officer.json()["basis"] == "parental-responsibility"
    decision = await world.api("POST", "decisions", question, token=holder)
    assert decision.status == 200, decision.body
    answer = decision.json()
    assert (answer["permit"], answer["decision"], answer["basis"]) == (
        False,
        "deny",
        "hidden-from-parents",
    )
    assert "hide-from-parents" in answer["obligations"]
    assert answer["consents"] == [f"Consent/{outcome['id']}"]

    await until_status(world, gp_note, SKOLE, 200, token=mother)  # parental responsibility
    assert (await world.fhir("GET", bup_note, token=mother, by=SKOLE)).status == 404
    search = await world.fhir("GET", notes_of(child), token=mother, by=SKOLE)
    assert search.json()["total"] == 1
    assert ids(search) == [gp_note]
    consents = await world.fhir("GET", f"Consent?patient={child.ref}", token=mother, by=SKOLE)
    assert f"Consent/{outcome['id']}" not in ids(consents, None)
    assert (
        await world.fhir("GET", f"Consent/{outcome['id']}", token=mother, by=SKOLE)
    ).status == 404
    # The other parent is kept out as well.
    father = world.token(SKOLE, fhir_user=child.father)
    assert (await world.fhir("GET", bup_note, token=father, by=SKOLE)).status == 404

    younger = await world.child(11)
    refused = await world.api("POST", "consents", {**confidential, "patient": younger.ref})
    assert refused.status == 422, refused.body
    assert "12" in diagnostics(refused)
    assert await listed(world, younger) == []


# -- 4. daily care ------------------------------------------------------------------------


async def test_daily_care_needs_one_parent_and_the_other_heard(world: World) -> None:
    child = await world.child(10)
    body = {
        "patient": child.ref,
        "purpose": "helsehjelp",
        "recipients": {"organizations": [BUP]},
        "categories": ["journal"],
        "daily_care": True,
        "signatures": [signature(child.mother)],
        "child_view": HEARD,
    }
    first = await world.api("POST", "consents", body)
    assert first.status == 201, first.body
    outcome = first.json()
    assert outcome["status"] == "proposed", outcome
    assert outcome["consent"]["rule"] == "parents-one-daily-care"
    assert outcome["missing"] == [f"record that {child.father} was heard"]
    assert outcome["authority"]["one_parent_must_hear_other"] is True
    signed = await world.api(
        "POST",
        f"consents/{outcome['id']}/signatures",
        {**signature(child.mother), "other_parent_heard": [child.father]},
    )
    assert signed.status == 200, signed.body
    after = signed.json()
    assert after["status"] == "active", after
    assert after["missing"] == []
    assert after["consent"]["other_parent_heard"] == [child.father]
    assert any(child.father in reason and "heard" in reason for reason in after["reasons"])


# -- 5. the 16th birthday -----------------------------------------------------------------


async def test_turning_16_ends_the_parents_consent(world: World) -> None:
    child = await world.child(16, days=1)  # 15 today, 16 tomorrow
    before = await world.api("GET", f"authority?patient={child.ref}&purpose=informasjonsdeling")
    assert (before.json()["rule"], before.json()["age"]) == ("parents", 15)
    note = await world.note(child, "Bekymring", by=BVT)
    both = sharing(child, signature(child.mother), signature(child.father), child_view=HEARD)
    outcome = await granted(world, both)
    assert outcome["consent"]["valid_until"] == date.today().isoformat()
    await until_status(world, note, BUP, 200)

    patient = (await world.fhir("GET", child.ref, by=BVT)).json()
    patient["birthDate"] = born_years_ago(16).isoformat()
    refused = await world.fhir("PUT", child.ref, patient, by=BVT)
    assert refused.status == 422, "a birth date is the population register's to correct"
    register = world.stack.register_token()
    corrected = await world.fhir("PUT", child.ref, patient, by=BVT, token=register)
    assert corrected.status == 200, corrected.body

    async def denied() -> bool:
        return (await world.fhir("GET", note, by=BUP)).status == 404

    await wait_for(denied, 2)

    async def ended() -> bool:
        [record] = await listed(world, child)
        return bool(record["status"] == "inactive")

    await wait_for(ended, 5)
    [record] = await listed(world, child)
    assert record["ended_because"] == "authority-changed"
    assert record["effective_status"] == "inactive"
    assert any("16" in reason and "youth" in reason for reason in record["reasons"])
    after = await world.api("GET", f"authority?patient={child.ref}&purpose=informasjonsdeling")
    assert (after.json()["rule"], after.json()["age"]) == ("youth-16", 16)
    assert after.json()["grantors"] == [{"role": "child", "members": [child.ref], "need": "all"}]
    search = await world.fhir("GET", notes_of(child), by=BUP)
    assert search.json()["total"] == 0


# -- 6. leaks -----------------------------------------------------------------------------


async def test_no_read_path_leaks_a_note_and_a_consent_opens_them_all(world: World) -> None:
    child = await world.child(13)
    a = await world.note(child, "A: barnevernets notat", by=BVT)
    b = await world.note(child, "B: BUPs tillegg", by=BUP, relates_to=a)
    c = await world.note(child, "C: barnevernets svar", by=BVT, relates_to=b)
    a_id, b_id = a.partition("/")[2], b.partition("/")[2]

    async def paths(open_: bool) -> None:
        expected = 200 if open_ else 404
        assert (await world.fhir("GET", a, by=BUP)).status == expected
        assert (await world.fhir("GET", f"{a}/_history/1", by=BUP)).status == expected
        history = await world.fhir("GET", f"{a}/_history", by=BUP)
        assert history.status == expected, history.body
        if open_:
            assert ids(history, None) == [a]
        type_history = await world.fhir("GET", "DocumentReference/_history", by=BUP)
        assert (a in ids(type_history, None)) is open_
        assert (c in ids(type_history, None)) is open_
        assert b in ids(type_history, None)

        included = await world.fhir(
            "GET",
            f"DocumentReference?_id={b_id}&_include=DocumentReference:relatesto",
            by=BUP,
        )
        assert ids(included) == [b]
        assert ids(included, "include") == ([a] if open_ else [])
        revincluded = await world.fhir(
            "GET",
            f"DocumentReference?_id={b_id}&_revinclude=DocumentReference:relatesto",
            by=BUP,
        )
        assert ids(revincluded) == [b]
        assert ids(revincluded, "include") == ([c] if open_ else [])
        by_id = await world.fhir("GET", f"DocumentReference?_id={a_id}&_total=accurate", by=BUP)
        assert by_id.json()["total"] == (1 if open_ else 0)
        assert ids(by_id) == ([a] if open_ else [])
        everything = await world.fhir("GET", notes_of(child), by=BUP)
        assert everything.json()["total"] == (3 if open_ else 1)
        assert sorted(ids(everything)) == sorted([a, b, c] if open_ else [b])
        related = await world.fhir("GET", f"DocumentReference?relatesto={a}", by=BUP)
        assert ids(related) == [b]

        batch = await world.fhir(
            "POST",
            "",
            {
                "resourceType": "Bundle",
                "type": "batch",
                "entry": [{"request": {"method": "GET", "url": a}}],
            },
            by=BUP,
        )
        assert batch.status == 200, batch.body
        [entry] = batch.json()["entry"]
        assert entry["response"]["status"].startswith(str(expected))
        assert ("resource" in entry) is open_
        transaction = await world.fhir(
            "POST",
            "",
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [{"request": {"method": "GET", "url": a}}],
            },
            by=BUP,
        )
        assert transaction.status == expected, transaction.body
        if open_:
            [entry] = transaction.json()["entry"]
            assert entry["resource"]["id"] == a_id
        else:
            assert transaction.json()["resourceType"] == "OperationOutcome"
            assert "not known" in diagnostics(transaction)

    await paths(open_=False)
    both = sharing(child, signature(child.mother), signature(child.father), child_view=HEARD)
    await granted(world, both)
    await until_status(world, a, BUP, 200)
    await paths(open_=True)


# -- 7. emergency access ------------------------------------------------------------------


async def test_emergency_access_is_for_an_identified_health_person_and_reviewed(
    world: World,
) -> None:
    child = await world.child(9)
    note = await world.note(child, "Bekymring", by=BVT)
    gp_note = await world.note(child, "Allergi", by=GP)
    doctor = world.token(LEGEVAKT, hpr="9144889")
    assert (await world.fhir("GET", note, by=LEGEVAKT, token=doctor)).status == 404
    no_reason = await world.fhir(
        "GET", note, by=LEGEVAKT, token=doctor, headers={EMERGENCY_PATIENT: child.ref}
    )
    assert no_reason.status == 400, no_reason.body
    assert "Barnebro-Emergency-Reason" in diagnostics(no_reason)
    glass = {EMERGENCY_PATIENT: child.ref, EMERGENCY_REASON: "Bevisstløs, trenger historikk"}
    system_only = await world.fhir("GET", note, by=LEGEVAKT, headers=glass)
    assert system_only.status == 404, "a system token names no health person: no emergency"
    person = world.token(SKOLE, fhir_user="RelatedPerson/not-a-parent")
    assert (await world.fhir("GET", note, by=SKOLE, token=person, headers=glass)).status == 404
    broken = await world.fhir("GET", note, by=LEGEVAKT, token=doctor, headers=glass)
    assert broken.status == 200, broken.body
    assert broken.json()["id"] == note.partition("/")[2]
    other = await world.fhir(
        "GET", note, by=LEGEVAKT, token=doctor, headers={**glass, EMERGENCY_PATIENT: "x1"}
    )
    assert other.status == 404, "emergency access covers the named patient only"
    barnevern = world.token(BVT, hpr="9144889")
    assert (await world.fhir("GET", gp_note, by=BVT, token=barnevern, headers=glass)).status == 404

    operator = world.stack.operator_token()
    pending = f"AuditEvent?patient={child.ref}&review=pending"

    async def listed() -> list[dict[str, Any]]:
        reply = await world.fhir("GET", pending, by=BVT, token=operator)
        assert reply.status == 200, reply.body
        return [
            e["resource"] for e in reply.json().get("entry", []) if e["search"]["mode"] == "match"
        ]

    async def audited() -> bool:
        return bool(await listed())

    await wait_for(audited, 5)
    events = await listed()
    assert {e["agent"][0]["who"]["identifier"]["value"] for e in events} == {LEGEVAKT}
    assert all(
        {"system": HPR_SYSTEM, "value": "9144889"}
        in [a["who"].get("identifier") for a in e["agent"]]
        for e in events
    ), "the audit names the health person who broke the glass"
    assert all("Bevisstløs" in e.get("outcomeDesc", "") for e in events)
    assert all(e["outcome"] == "0" for e in events)
    emergency_ids = {e["id"] for e in events}

    own_audit = world.token(BVT, scope=AUDIT_SCOPE)
    others = await world.fhir("GET", f"AuditEvent?patient={child.ref}&basis=emergency", by=BVT,
                              token=own_audit)  # fmt: skip
    assert others.status == 200 and not ids(others), "an organisation sees only its own accesses"

    async def raised(name: str) -> bool:
        return any(
            kind.endswith(name) and resource in emergency_ids
            for kind, resource in await event_types(world)
        )

    await wait_for(lambda: raised("emergency-access"), 5, interval=0.2)
    reviewed_id = sorted(emergency_ids)[0]
    review = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "conclusion", "valueCode": "justified"},
            {"name": "reviewer", "valueString": "Personvernombud Olsen"},
            {"name": "note", "valueString": "Akutt, begrunnet"},
        ],
    }
    by_legevakt = await world.fhir(
        "POST", f"AuditEvent/{reviewed_id}/$review", review, by=LEGEVAKT, token=doctor
    )
    assert by_legevakt.status == 403, "only the operator records a review"
    done = await world.fhir(
        "POST", f"AuditEvent/{reviewed_id}/$review", review, by=BVT, token=operator
    )
    assert done.status == 200, done.body
    assert reviewed_id not in {e["id"] for e in await listed()}
    justified = await world.fhir(
        "GET", f"AuditEvent?patient={child.ref}&review=justified", by=BVT, token=operator
    )
    assert ids(justified) == [f"AuditEvent/{reviewed_id}"]
    again = await world.fhir(
        "POST", f"AuditEvent/{reviewed_id}/$review", review, by=BVT, token=operator
    )
    assert again.status == 409, again.body
    await wait_for(lambda: raised("emergency-reviewed"), 5, interval=0.2)


# -- 8. the audit trail -------------------------------------------------------------------


async def test_the_audit_trail_needs_its_own_scope_and_records_every_decision(
    world: World,
) -> None:
    child = await world.child(12)
    note = await world.note(child, "Notat", by=BVT)
    assert (await world.fhir("GET", note, by=BVT)).status == 200
    assert (await world.fhir("GET", note, by=BUP)).status == 404
    forbidden = await world.fhir("GET", f"AuditEvent?patient={child.ref}", by=BVT)
    assert forbidden.status == 403, forbidden.body
    assert "system/AuditEvent" in diagnostics(forbidden)
    operator = world.stack.operator_token()

    async def outcomes(query: str, token: str = operator) -> set[str]:
        reply = await world.fhir("GET", query, by=GP, token=token)
        assert reply.status == 200, reply.body
        return {
            e["resource"]["outcome"]
            for e in reply.json().get("entry", [])
            if e["search"]["mode"] == "match"
        }

    # The patient of what was released is searched as `patient`; the patient of what was
    # withheld only as `withheld-patient`, and only by the operator.
    released = f"AuditEvent?patient={child.ref}"
    withheld = f"AuditEvent?withheld-patient={child.ref}"

    async def both_recorded() -> bool:
        return await outcomes(released) == {"0"} and await outcomes(withheld) == {"4"}

    await wait_for(both_recorded, 5)
    assert await outcomes(f"{withheld}&outcome=4") == {"4"}
    assert await outcomes(f"{withheld}&outcome=0") == set()
    bup = f"{withheld}&agent={ORGNR_SYSTEM}|{BUP}"
    reply = await world.fhir("GET", bup, by=GP, token=operator)
    matches = [e["resource"] for e in reply.json()["entry"] if e["search"]["mode"] == "match"]
    assert matches and {m["outcome"] for m in matches} == {"4"}
    for event in matches:
        assert event["agent"][0]["who"]["identifier"]["value"] == BUP
        assert not any(e["what"]["reference"] == child.ref for e in event["entity"])
        entity = next(e for e in event["entity"] if e["what"]["reference"] == note)
        assert {"type": "decision", "valueString": "deny"} in entity["detail"]
        assert {"type": "withheld-patient", "valueString": child.ref} in entity["detail"]
    bvt = f"{released}&agent={ORGNR_SYSTEM}|{BVT}"
    assert "0" in await outcomes(bvt)
    # An organisation's own audit role sees the records of its own accesses, no one else's,
    # and not whom what it was refused concerned.
    bup_auditor = world.token(BUP, scope=AUDIT_SCOPE)
    assert await outcomes(released, bup_auditor) == set()
    mine = f"AuditEvent?agent={ORGNR_SYSTEM}|{BUP}"
    own = await world.fhir("GET", mine, by=BUP, token=bup_auditor)
    refused = [  # a search's record has a query entity, with no `what`
        x
        for e in own.json()["entry"]
        for x in e["resource"]["entity"]
        if x.get("what", {}).get("reference") == note
    ]
    assert refused and all(
        {"type": "basis", "valueString": "withheld"} in x["detail"]
        and not any(d["type"] == "withheld-patient" for d in x["detail"])
        for x in refused
    ), refused
    searched = await world.fhir("GET", withheld, by=BUP, token=bup_auditor)
    assert searched.status == 403, searched.body
    assert await outcomes(released, world.token(GP, scope=AUDIT_SCOPE)) == set()
    assert "0" in await outcomes(released, world.token(BVT, scope=AUDIT_SCOPE))
    auditor = world.token(GP, scope=AUDIT_SCOPE)
    assert (
        await world.fhir("GET", f"AuditEvent/{matches[0]['id']}", by=GP, token=auditor)
    ).status == 404

    writer = world.token(GP, scope="system/AuditEvent.cruds")
    posted = await world.fhir(
        "POST",
        "AuditEvent",
        {"resourceType": "AuditEvent", **{k: v for k, v in matches[0].items() if k != "id"}},
        by=GP,
        token=writer,
    )
    assert posted.status == 405, posted.body
    consent = await world.fhir(
        "POST",
        "Consent",
        {
            "resourceType": "Consent",
            "status": "active",
            "scope": {"coding": [{"code": "patient-privacy"}]},
            "category": [{"coding": [{"code": "informasjonsdeling"}]}],
            "patient": {"reference": child.ref},
        },
        by=BVT,
    )
    assert consent.status == 405, consent.body
    assert await listed(world, child) == []


# -- 9. hpl §33 ---------------------------------------------------------------------------


async def test_a_hpl_33_disclosure_opens_exactly_the_disclosed_note(world: World) -> None:
    child = await world.child(8)
    disclosed = await world.note(child, "Mistanke om mishandling", by=GP)
    kept = await world.note(child, "Øreinfeksjon", by=GP)
    before = await listed(world, child)
    assert before == []
    assert (await world.fhir("GET", disclosed, by=BVT)).status == 404
    report = {
        "patient": child.ref,
        "recipient": BVT,
        "resources": [disclosed],
        "reason": "Blåmerker som ikke er forklart",
    }
    reporter = world.token(GP, hpr="9144889")
    recorded = await world.api("POST", "disclosures", report, token=reporter)
    assert recorded.status == 201, recorded.body
    assert recorded.json()["basis"] == "hpl-33"
    assert recorded.json()["audit_event"]["resourceType"] == "AuditEvent"
    await until_status(world, disclosed, BVT, 200)
    assert (await world.fhir("GET", kept, by=BVT)).status == 404
    search = await world.fhir("GET", notes_of(child), by=BVT)
    assert search.json()["total"] == 1 and ids(search) == [disclosed]
    assert (await world.fhir("GET", disclosed, by=BUP)).status == 404, "BVT only"

    by_barnevern = await world.api("POST", "disclosures", report, by=BVT)
    assert by_barnevern.status == 403, by_barnevern.body
    to_bup = await world.api("POST", "disclosures", {**report, "recipient": BUP}, token=reporter)
    assert to_bup.status == 422, to_bup.body
    assert "barnevernstjeneste" in diagnostics(to_bup)
    assert await listed(world, child) == [], "a disclosure is never a consent"
    consents = await world.fhir("GET", f"Consent?patient={child.ref}&_total=accurate", by=BVT)
    assert consents.json()["total"] == 0


# -- 10. missing birth date ---------------------------------------------------------------


async def test_without_a_birth_date_nobody_may_consent_yet(world: World) -> None:
    child = await world.child(10, birth_date=False)
    authority = await world.api("GET", f"authority?patient={child.ref}&purpose=helsehjelp")
    assert authority.status == 200, authority.body
    answer = authority.json()
    assert (answer["decidable"], answer["rule"]) == (False, "birth-date-needed")
    assert answer["grantors"] == []
    assert any("birth date" in missing for missing in answer["missing"])
    both = sharing(child, signature(child.mother), signature(child.father), child_view=HEARD)
    refused = await world.api("POST", "consents", both)
    assert refused.status == 422, refused.body
    assert "birth date" in diagnostics(refused)
    assert await listed(world, child) == []
    consents = await world.fhir("GET", f"Consent?patient={child.ref}&_total=accurate", by=BVT)
    assert consents.json()["total"] == 0


# -- 11. bad input ------------------------------------------------------------------------


async def test_bad_input_is_refused_naming_the_field(world: World) -> None:
    child = await world.child(14)
    good = sharing(child, signature(child.mother), child_view=HEARD)
    cases: list[tuple[dict[str, Any], str]] = [
        ({**good, "colour": "blue"}, "colour"),
        ({**good, "patient": "Pasient/1"}, "patient"),
        ({**good, "categories": ["journals"]}, "categories"),
        ({**good, "signatures": []}, "signatures"),
        ({**good, "start": "2025-02-01", "end": "2025-01-01"}, "end is before start"),
        ({**good, "signatures": [{**signature(child.mother), "grantor": "Mor"}]}, "grantor"),
    ]
    for body, field in cases:
        reply = await world.api("POST", "consents", body)
        assert reply.status == 400, (field, reply.body)
        assert field in diagnostics(reply), (field, reply.body)
    url = f"{world.admin}/consents"
    token = world.token(BVT)
    not_json = await world.stack.call(
        "POST", url, raw=b"{not json", token=token, headers={"Content-Type": "application/json"}
    )
    assert not_json.status == 400, not_json.body
    assert not_json.issues()[0]["code"] == "invalid"
    plain = await world.stack.call(
        "POST", url, raw=b"patient=x", token=token, headers={"Content-Type": "text/plain"}
    )
    assert plain.status == 415, plain.body
    assert plain.issues()[0]["code"] == "not-supported"
    assert await listed(world, child) == []

    unknown = await world.api(
        "POST", "consents/no-such-consent/signatures", signature(child.father)
    )
    assert unknown.status == 404, unknown.body
    both = sharing(child, signature(child.mother), signature(child.father), child_view=HEARD)
    outcome = await granted(world, both)
    again = await world.api("POST", f"consents/{outcome['id']}/signatures", signature(child.father))
    assert again.status == 409, again.body
    assert "active" in diagnostics(again)
    [record] = await listed(world, child)
    assert len(record["signatures"]) == 2 and record["status"] == "active"


# -- 12. concurrent signatures ------------------------------------------------------------


async def test_concurrent_signatures_of_both_parents_are_both_kept(world: World) -> None:
    child = await world.child(13)
    body = sharing(child, signature(child.ref), purpose="nasjonalt-forlop", child_view=HEARD)
    first = await world.api("POST", "consents", body)
    assert first.status == 201, first.body
    assert first.json()["status"] == "proposed", first.json()
    consent_id = first.json()["id"]

    async def sign(grantor: str) -> Reply:
        path = f"consents/{consent_id}/signatures"
        reply = await world.api("POST", path, signature(grantor))
        if reply.status == 409 and "conflict" in reply.body.decode():
            reply = await world.api("POST", path, signature(grantor))
        return reply

    mother, father = await asyncio.gather(sign(child.mother), sign(child.father))
    assert {mother.status, father.status} == {200}, (mother.body, father.body)
    [record] = await listed(world, child)
    assert record["status"] == "active", record
    grantors = sorted(s["grantor"] for s in record["signatures"])
    assert grantors == sorted([child.ref, child.mother, child.father])
    fhir = await world.fhir("GET", f"Consent/{consent_id}", by=BVT)
    assert fhir.json()["status"] == "active"
    performers = sorted(p["reference"] for p in fhir.json()["performer"])
    assert performers == sorted([child.ref, child.mother, child.father])


# -- 13. OpenAPI --------------------------------------------------------------------------


async def test_the_openapi_document_is_served_without_a_token(world: World) -> None:
    reply = await world.stack.call("GET", f"{world.admin}/openapi.json", authenticated=False)
    assert reply.status == 200, reply.body
    document = reply.json()
    assert str(document["openapi"]).startswith("3.1")
    for path in (
        "/authority",
        "/consents",
        "/consents/{id}/signatures",
        "/consents/{id}/withdrawal",
        "/patients/{id}/consents",
        "/decisions",
        "/disclosures",
        "/patients/{id}/disclosures",
        "/disclosures/{id}/closure",
    ):
        assert path in document["paths"], path
    unauthenticated = await world.stack.call(
        "GET", f"{world.admin}/authority?patient=Patient/x&purpose=helsehjelp", authenticated=False
    )
    assert unauthenticated.status == 401


# -- 14. Nasjonalt forløp -----------------------------------------------------------------


async def test_nasjonalt_forlop_needs_the_parents_under_15_only(world: World) -> None:
    younger = await world.child(14)
    alone = await world.api(
        "POST",
        "consents",
        sharing(younger, signature(younger.ref), purpose="nasjonalt-forlop", child_view=HEARD),
    )
    assert alone.status == 201, alone.body
    outcome = alone.json()
    assert (outcome["status"], outcome["consent"]["rule"]) == ("proposed", "nasjonalt-forlop")
    assert sorted(outcome["missing"]) == sorted(
        [f"consent from {younger.mother}", f"consent from {younger.father}"]
    )
    older = await world.child(15)
    own = await world.api(
        "POST",
        "consents",
        sharing(older, signature(older.ref), purpose="nasjonalt-forlop"),
    )
    assert own.status == 201, own.body
    assert own.json()["status"] == "active", own.json()
    assert own.json()["authority"]["grantors"] == [
        {"role": "child", "members": [older.ref], "need": "all"}
    ]
