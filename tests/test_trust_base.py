"""The trust base, attacked as an outsider would: each way a caller could state a fact it is
not entitled to state, or learn about a child without a basis, tried against the running
stack (gateway, directory, consent, referral and care plan services on real NATS, on SQLite
and PostgreSQL), and shown to fail with a clear 4xx, or to answer exactly as for a missing
child, leaving nothing written."""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import orjson

from shared.codes import CARE_ORDER_CODE, CONTACT_RELATIONSHIP_SYSTEM, ORGANISATION_KIND_SYSTEM
from shared.identifiers import FNR_SYSTEM, ORGNR_SYSTEM
from tests.careplan_world import CarePlanWorld, member, person, plan, team
from tests.referral_world import BUP, BVT, GP, KOMMUNE, LEGEVAKT, SKOLE, Child, ReferralWorld
from tests.support import Reply, Stack, diagnostics, parent, wait_for

HEARD = {"heard": True, "statement": "Greit", "heard_by": "Lege Li"}
GLASS = "Barnebro-Emergency-Patient"
REASON = "Barnebro-Emergency-Reason"


async def _nonempty(found: Any) -> bool:
    return bool(await found)


def matches(reply: Reply) -> list[dict[str, Any]]:
    assert reply.status == 200, reply.body
    return [e["resource"] for e in reply.json().get("entry", []) if e["search"]["mode"] == "match"]


def signature(grantor: str) -> dict[str, Any]:
    return {"grantor": grantor, "method": "in-person", "collected_by": "Lege Li"}


def care_order_contact(organization_id: str) -> dict[str, Any]:
    return {
        "relationship": [
            {"coding": [{"system": CONTACT_RELATIONSHIP_SYSTEM, "code": CARE_ORDER_CODE}]}
        ],
        "organization": {"reference": f"Organization/{organization_id}"},
        "period": {"start": "2024-01-01"},
    }


def parameters(action: str, date: str | None = None, successor: str | None = None) -> Any:
    """The Parameters of `$care-order`."""
    given: list[dict[str, Any]] = [{"name": "action", "valueCode": action}]
    if date:
        given.append({"name": "date", "valueDate": date})
    if successor:
        organisation = {"system": ORGNR_SYSTEM, "value": successor}
        given.append({"name": "successor", "valueIdentifier": organisation})
    return {"resourceType": "Parameters", "parameter": given}


async def own_organization(world: ReferralWorld, orgnr: str) -> dict[str, Any]:
    reply = await world.fhir("GET", f"Organization/{world.organisations[orgnr]}", by=orgnr)
    assert reply.status == 200, reply.body
    found: dict[str, Any] = reply.json()
    return found


# -- who states which fact --------------------------------------------------------------------


async def test_a_school_cannot_make_itself_another_kind(referrals: ReferralWorld) -> None:
    school = await own_organization(referrals, SKOLE)
    school["type"] = [
        {"coding": [{"system": ORGANISATION_KIND_SYSTEM, "code": "barnevernstjeneste"}]}
    ]
    reply = await referrals.fhir("PUT", f"Organization/{school['id']}", school, by=SKOLE)
    assert reply.status == 403, reply.body
    assert "operator" in diagnostics(reply)
    new = {**school, "identifier": [{"system": ORGNR_SYSTEM, "value": "910000160"}]}
    new.pop("id")
    assert (await referrals.fhir("POST", "Organization", new, by=SKOLE)).status == 403
    assert (await referrals.fhir("POST", "Organization", new, by=BVT)).status == 403
    unchanged = await own_organization(referrals, SKOLE)
    assert unchanged["meta"]["versionId"] == "1"
    assert unchanged["type"][0]["coding"][0]["code"] == "skole"


async def test_a_token_claiming_a_kind_or_an_operator_credential_is_not_believed(
    referrals: ReferralWorld,
) -> None:
    """HelseID-style tokens get their organisation's kind from the register only, and an
    integration token never becomes an operator credential, whatever its claims say."""
    import jwt

    from shared.auth.local_keys import KEY_FILE, KEY_ID, key_dir

    stack = referrals.stack
    child = await referrals.child()
    note = await referrals.submit(child)
    attachment = note.response["resource"]["supportingInfo"][0]["reference"]
    claims = {
        "iss": "barnebro-local",
        "aud": "barnebro",
        "exp": 4_102_444_800,
        "scope": "system/*.cruds",
        "helseid://claims/client/claims/orgnr_parent": SKOLE,
        "helseid://claims/hpr/hpr_number": "9144889",
        "barnebro:org_kind": "legevakt",
        "barnebro:credential": "operator",
    }
    private = (key_dir(stack.settings.data_dir) / KEY_FILE).read_bytes()
    forged = jwt.encode(claims, private, algorithm="ES256", headers={"kid": KEY_ID})
    await stack.admit(SKOLE, "skole")
    glass = {GLASS: child.id, REASON: "Akutt"}
    read = await stack.call("GET", attachment, token=forged, headers=glass)
    assert read.status == 404, "a skole gets no emergency access, whatever its token claims"
    org = {
        "resourceType": "Organization",
        "name": "Falsk legevakt",
        "identifier": [{"system": ORGNR_SYSTEM, "value": "910000179"}],
        "type": [{"coding": [{"system": ORGANISATION_KIND_SYSTEM, "code": "legevakt"}]}],
    }
    assert (await stack.call("POST", "Organization", org, token=forged)).status == 403


async def test_a_care_order_is_stated_only_by_its_holder(careplans: CarePlanWorld) -> None:
    referrals = careplans.world
    stack = referrals.stack
    child = await referrals.child(age=12)
    bvt_id = referrals.organisations[BVT]
    patient = (await referrals.fhir("GET", f"Patient/{child.id}", by=BVT)).json()
    before = patient["meta"]["versionId"]
    # A school may not write a child's record at all.
    claimed = {**patient, "contact": [care_order_contact(referrals.organisations[SKOLE])]}
    reply = await referrals.fhir("PUT", f"Patient/{child.id}", claimed, by=SKOLE)
    assert reply.status == 403, reply.body
    # A health organisation with a relation may not state one either, for anyone.
    await referrals.submit(child)  # the GP refers to BUP: both are now related
    for holder in (referrals.organisations[BUP], bvt_id):
        seen = (await referrals.fhir("GET", f"Patient/{child.id}", by=BUP)).json()
        seen["contact"] = [care_order_contact(holder)]
        reply = await referrals.fhir("PUT", f"Patient/{child.id}", seen, by=BUP)
        assert reply.status == 422, reply.body
    assert "barnevernstjeneste that holds it" in diagnostics(reply)
    # Another barnevernstjeneste (registered as such) may not name the holder's office.
    other_bvt = "910000187"
    other = stack.token(orgnr=other_bvt, kind="barnevernstjeneste")
    order = parameters(action="end")
    reply = await stack.call("POST", f"Patient/{child.id}/$care-order", order, token=other)
    assert reply.status == 404, "it has no relation to the child: answered as for a missing one"
    assert diagnostics(reply) == f"Patient/{child.id} is not known"
    after = (await referrals.fhir("GET", f"Patient/{child.id}", by=BVT)).json()
    assert after["meta"]["versionId"] == before
    assert "contact" not in after
    # The holder states its own, with no other relation to the child needed.
    start = parameters(action="start", date="2026-01-05")
    reply = await stack.call("POST", f"Patient/{child.id}/$care-order", start, token=other)
    assert reply.status == 200, reply.body
    orders = (await referrals.fhir("GET", f"Patient/{child.id}", by=BUP)).json()["contact"]
    other_org = (await stack.call("GET", f"Organization?identifier={ORGNR_SYSTEM}|{other_bvt}",
                                  token=other)).json()["entry"][0]["resource"]["id"]  # fmt: skip
    assert [o["organization"]["reference"] for o in orders] == [f"Organization/{other_org}"]
    # The old holder of nothing cannot end it; a PUT by BUP that drops it is refused.
    assert (await referrals.fhir("POST", f"Patient/{child.id}/$care-order", order,
                                 by=BVT)).status == 409  # fmt: skip
    seen = (await referrals.fhir("GET", f"Patient/{child.id}", by=BUP)).json()
    seen.pop("contact")
    seen["name"] = [{"family": "Nordmann", "given": ["Ola", "Nytt"]}]
    assert (await referrals.fhir("PUT", f"Patient/{child.id}", seen, by=BUP)).status == 422
    # The holder transfers it to another registered barnevernstjeneste.
    transfer = parameters(action="transfer", date="2026-02-01", successor=BVT)
    reply = await stack.call("POST", f"Patient/{child.id}/$care-order", transfer, token=other)
    assert reply.status == 200, reply.body
    orders = (await referrals.fhir("GET", f"Patient/{child.id}", by=BVT)).json()["contact"]
    assert [(o["organization"]["reference"], o["period"]) for o in orders] == [
        (f"Organization/{other_org}", {"start": "2026-01-05", "end": "2026-01-31"}),
        (f"Organization/{bvt_id}", {"start": "2026-02-01"}),
    ]
    authority = await referrals.consent_api(
        "GET", f"authority?patient=Patient/{child.id}&purpose=informasjonsdeling", None, by=BVT
    )
    assert authority.status == 200, authority.body
    assert authority.json()["rule"] == "care-order"
    # Every change to a care order is in the audit trail, the holder as its agent.

    async def audited() -> bool:
        found = await stack.call(
            "GET", f"AuditEvent?patient=Patient/{child.id}&subtype=update",
            token=stack.operator_token(),
        )  # fmt: skip
        texts = [r.get("outcomeDesc", "") for r in matches(found)]
        return sum("care-order" in t for t in texts) >= 3

    await wait_for(audited, 10)


async def test_parental_responsibility_comes_only_from_the_register(
    referrals: ReferralWorld,
) -> None:
    stack = referrals.stack
    child = await referrals.child()
    forged = parent(child.id, "Falsk", "felles")
    for orgnr in (SKOLE, BUP, BVT):
        reply = await referrals.fhir("POST", "RelatedPerson", forged, by=orgnr)
        assert reply.status == 403, reply.body
        assert "population register" in diagnostics(reply)
    operator = await stack.call("POST", "RelatedPerson", forged, token=stack.operator_token())
    assert operator.status == 403
    mother = child.parents[0]
    existing = (await stack.call("GET", mother, token=stack.register_token())).json()
    existing["relationship"][0]["coding"][0]["code"] = "mor"
    assert (await referrals.fhir("PUT", mother, existing, by=BVT)).status == 403
    listed = await stack.call("GET", f"RelatedPerson?patient=Patient/{child.id}",
                              token=stack.register_token())  # fmt: skip
    assert len(matches(listed)) == 2, "nothing was written"
    assert (await stack.call("POST", "RelatedPerson", forged,
                             token=stack.register_token())).status == 201  # fmt: skip


async def test_an_ended_parental_responsibility_no_longer_counts(
    referrals: ReferralWorld,
) -> None:
    stack = referrals.stack
    child = await referrals.child(age=10)
    father = child.parents[1]
    authority = f"authority?patient=Patient/{child.id}&purpose=informasjonsdeling"

    async def grantors() -> list[str]:
        reply = await referrals.consent_api("GET", authority, None, by=BVT)
        assert reply.status == 200, reply.body
        return [m for g in reply.json()["grantors"] for m in g["members"]]

    assert father in await grantors()
    record = (await stack.call("GET", father, token=stack.register_token())).json()
    record["period"] = {"start": "2016-01-01", "end": "2020-01-01"}
    updated = await stack.call("PUT", father, record, token=stack.register_token())
    assert updated.status == 200, updated.body
    assert father not in await grantors()


# -- who sees the directory --------------------------------------------------------------------


async def test_the_directory_of_children_is_closed(referrals: ReferralWorld) -> None:
    child = await referrals.child(care_order=True)
    gp_child = await referrals.child()  # registered by BVT; the GP refers it below
    await referrals.submit(gp_child)
    for orgnr in (SKOLE, LEGEVAKT, KOMMUNE):
        listed = await referrals.fhir("GET", "Patient?_count=100", by=orgnr)
        assert matches(listed) == [], f"{orgnr} lists children it has no relation to"
        named = await referrals.fhir("GET", "Patient?name=Ola", by=orgnr)
        assert matches(named) == []
        read = await referrals.fhir("GET", f"Patient/{child.id}", by=orgnr)
        missing = await referrals.fhir("GET", "Patient/no-such-child", by=orgnr)
        assert (read.status, missing.status) == (404, 404)
        assert read.json()["issue"][0]["code"] == missing.json()["issue"][0]["code"]
        parents = await referrals.fhir("GET", f"RelatedPerson?patient=Patient/{child.id}",
                                       by=orgnr)  # fmt: skip
        assert matches(parents) == []
    holder = f"Organization/{referrals.organisations[BVT]}"
    for orgnr in (SKOLE, BUP, GP):
        by_holder = await referrals.fhir(
            "GET", f"Patient?care-order-organization={holder}", by=orgnr
        )
        assert by_holder.status == 403, by_holder.body
    own = await referrals.fhir("GET", f"Patient?care-order-organization={holder}", by=BVT)
    assert child.id in {p["id"] for p in matches(own)}
    # The GP and BUP now have a relation to the child they referred and received.
    for orgnr in (GP, BUP):
        assert (await referrals.fhir("GET", f"Patient/{gp_child.id}", by=orgnr)).status == 200


async def test_an_exact_identifier_finds_one_child_as_a_subset(referrals: ReferralWorld) -> None:
    child = await referrals.child(care_order=True)
    by_number = f"Patient?identifier={FNR_SYSTEM}|{child.fnr}"
    found = matches(await referrals.fhir("GET", by_number, by=LEGEVAKT))
    assert len(found) == 1 and found[0]["id"] == child.id
    subset = found[0]
    assert "SUBSETTED" in [t["code"] for t in subset["meta"]["tag"]]
    assert set(subset) <= {"resourceType", "id", "meta", "identifier", "name", "birthDate",
                           "gender", "active"}  # fmt: skip
    assert "contact" not in subset and "generalPractitioner" not in subset
    for orgnr in (SKOLE, KOMMUNE):
        if orgnr == SKOLE:
            assert matches(await referrals.fhir("GET", by_number, by=orgnr)) == []
    widened = await referrals.fhir("GET", f"{by_number}&name=Ola", by=LEGEVAKT)
    assert matches(widened) == [], "only the exact identifier alone looks a child up"
    assert (await referrals.fhir("GET", f"Patient/{child.id}", by=LEGEVAKT)).status == 404


async def test_care_orders_are_never_shown_to_a_school(careplans: CarePlanWorld) -> None:
    referrals = careplans.world
    child = await referrals.child(care_order=True)
    sharing = {
        "patient": f"Patient/{child.id}",
        "purpose": "informasjonsdeling",
        "recipients": {"organizations": [SKOLE, BUP]},
        "categories": ["careplan"],
        "signatures": [signature(f"Organization/{referrals.organisations[BVT]}")],
        "child_view": HEARD,
    }
    reply = await referrals.consent_api("POST", "consents", sharing, by=BVT)
    assert reply.status == 201 and reply.json()["status"] == "active", reply.body

    async def school_sees() -> bool:
        seen = await referrals.fhir("GET", f"Patient/{child.id}", by=SKOLE)
        return seen.status == 200

    await wait_for(school_sees, 5)  # a consent recipient, once the grant has reached it
    school_view = await referrals.fhir("GET", f"Patient/{child.id}", by=SKOLE)
    assert "contact" not in school_view.json()
    # Nor any contact or managing organisation, whatever the wording.
    stored = (await referrals.fhir("GET", f"Patient/{child.id}", by=BVT)).json()
    bvt = {"reference": f"Organization/{referrals.organisations[BVT]}"}
    worded = {"relationship": [{"text": "omsorgsovertakelse"}], "organization": bvt}
    grandmother = {"name": {"text": "Barnevernstjenesten v/ Bestemor"}}
    stored["contact"] = [*stored["contact"], worded, grandmother]
    stored["managingOrganization"] = bvt
    reply = await referrals.fhir("PUT", f"Patient/{child.id}", stored, by=BVT)
    assert reply.status == 200, reply.body
    school_view = await referrals.fhir("GET", f"Patient/{child.id}", by=SKOLE)
    assert not {"contact", "managingOrganization"} & set(school_view.json()), school_view.body
    assert "Barnevernstjenesten" not in school_view.body.decode()
    managed = f"Patient?organization={bvt['reference']}"
    assert (await referrals.fhir("GET", managed, by=SKOLE)).status == 403
    included = f"Patient?_id={child.id}&_include=Patient:organization"
    assert (await referrals.fhir("GET", included, by=SKOLE)).status == 400
    assert (await referrals.fhir("GET", managed, by=BUP)).status == 200
    assert CARE_ORDER_CODE not in school_view.body.decode()
    history = await referrals.fhir("GET", f"Patient/{child.id}/_history", by=SKOLE)
    assert CARE_ORDER_CODE not in history.body.decode()
    bup_view = await referrals.fhir("GET", f"Patient/{child.id}", by=BUP)
    assert CARE_ORDER_CODE in bup_view.body.decode(), "a health party may know who consents"
    authority = f"authority?patient=Patient/{child.id}&purpose=informasjonsdeling"
    assert (await referrals.consent_api("GET", authority, None, by=SKOLE)).status == 403
    consents = await referrals.fhir("GET", f"Consent?patient=Patient/{child.id}", by=SKOLE)
    assert consents.status == 403, "consent records name the care-order holder"
    listed = await referrals.consent_api("GET", f"patients/{child.id}/consents", None, by=SKOLE)
    assert listed.status == 403


async def test_the_consent_api_answers_only_callers_with_a_relation(
    referrals: ReferralWorld,
) -> None:
    child = await referrals.child(care_order=True)
    for path in (
        f"authority?patient=Patient/{child.id}&purpose=informasjonsdeling",
        f"patients/{child.id}/consents",
    ):
        unrelated = await referrals.consent_api("GET", path, None, by=LEGEVAKT)
        unknown = await referrals.consent_api(
            "GET", path.replace(child.id, "no-such-child"), None, by=LEGEVAKT
        )
        assert (unrelated.status, unknown.status) == (404, 404), unrelated.body
        assert unrelated.json()["issue"][0]["code"] == unknown.json()["issue"][0]["code"]
        assert (await referrals.consent_api("GET", path, None, by=BVT)).status == 200
    question = {"actor": {"orgnr": LEGEVAKT, "kind": "legevakt"}, "patient": f"Patient/{child.id}",
                "category": "referral"}  # fmt: skip
    assert (await referrals.consent_api("POST", "decisions", question, by=LEGEVAKT)).status == 404


async def test_a_consent_that_is_not_active_makes_its_recipients_nothing(
    referrals: ReferralWorld,
) -> None:
    """Naming an organisation on a refused or proposed consent gives it no relation, at once
    or later: only an active consent is a basis, and only while it is."""
    child = await referrals.child()
    await referrals.start_care(child, BUP)

    def naming(orgnr: str, decision: str, grantors: tuple[str, ...]) -> dict[str, Any]:
        return {
            "patient": f"Patient/{child.id}",
            "purpose": "nasjonalt-forlop",
            "recipients": {"organizations": [orgnr]},
            "categories": ["careplan"],
            "signatures": [
                {"grantor": p, "decision": decision, "method": "in-person", "collected_by": "Li"}
                for p in grantors
            ],
            "child_view": HEARD,
        }

    refusal = naming(SKOLE, "refuse", child.parents)
    refused = await referrals.consent_api("POST", "consents", refusal, by=BUP)
    assert (refused.status, refused.json()["status"]) == (201, "rejected"), refused.body
    one_parent = naming(LEGEVAKT, "consent", child.parents[:1])
    proposed = await referrals.consent_api("POST", "consents", one_parent, by=BUP)
    assert proposed.status == 201, proposed.body
    assert proposed.json()["status"] == "proposed", proposed.body
    # A later relation, learnt from the events after the consents', shows they were read.
    await referrals.submit(child, by=BUP, to=KOMMUNE)
    view = referrals.referral.consent_view
    assert view is not None

    async def learnt() -> bool:
        state = view.published(child.id)
        return state is not None and KOMMUNE in state.related

    await wait_for(learnt, 10)
    state = view.published(child.id)
    assert state is not None
    assert not {SKOLE, LEGEVAKT} & set(state.related), state.related
    for orgnr in (SKOLE, LEGEVAKT):
        assert (await referrals.fhir("GET", f"Patient/{child.id}", by=orgnr)).status == 404


# -- who acts --------------------------------------------------------------------------------


async def test_a_parent_acts_only_as_themselves(referrals: ReferralWorld) -> None:
    stack = referrals.stack
    child = await referrals.child()
    referral = await referrals.submit(child)
    attachment = referral.response["resource"]["supportingInfo"][0]["reference"]
    mother = stack.token(orgnr=GP, kind="fastlege", fhir_user=child.parents[0])
    disclosure = {"patient": f"Patient/{child.id}", "recipient": BVT,
                  "resources": [attachment], "reason": "Bekymring"}  # fmt: skip
    url = f"http://127.0.0.1:{stack.settings.http_port}/consent/v1/disclosures"
    reply = await stack.call("POST", url, disclosure, token=mother)
    assert reply.status == 403, reply.body
    note = {"resourceType": "DocumentReference", "status": "current",
            "subject": {"reference": f"Patient/{child.id}"},
            "type": {"coding": [{"system": "x", "code": "y"}]},
            "content": [{"attachment": {"contentType": "text/plain", "data": "eA=="}}]}  # fmt: skip
    assert (await stack.call("POST", "DocumentReference", note, token=mother)).status == 403
    glass = {GLASS: child.id, REASON: "Akutt"}
    other = await referrals.child()
    read = await stack.call("GET", f"Patient/{other.id}", token=mother, headers=glass)
    assert read.status == 404, "a person never uses emergency access"
    assert (await stack.call("GET", f"Patient/{child.id}", token=mother)).status == 200
    by_person = f"AuditEvent?agent-person={child.parents[0]}&patient=Patient/{child.id}"

    async def named() -> list[dict[str, Any]]:
        return matches(await stack.call("GET", by_person, token=stack.operator_token()))

    await wait_for(lambda: _nonempty(named()), 10)
    for event in await named():
        requestors = [a for a in event["agent"] if a["requestor"]]
        assert requestors == [{"requestor": True, "who": {"reference": child.parents[0]}}]


async def test_emergency_access_needs_an_identified_health_person(
    referrals: ReferralWorld,
) -> None:
    stack = referrals.stack
    child = await referrals.child()
    referral = await referrals.submit(child)
    glass = {GLASS: child.id, REASON: "Bevisstløs"}
    system = referrals.token(LEGEVAKT)
    assert (await stack.call("GET", referral.ref, token=system, headers=glass)).status == 404
    school = stack.token(orgnr=SKOLE, kind="skole", hpr="9144889")
    assert (await stack.call("GET", referral.ref, token=school, headers=glass)).status == 404
    doctor = referrals.token(LEGEVAKT, hpr="9144889")
    assert (await stack.call("GET", referral.ref, token=doctor, headers=glass)).status == 200
    assert (await stack.call("GET", f"Patient/{child.id}", token=doctor,
                             headers=glass)).status == 200  # fmt: skip


# -- no oracles, no side doors -------------------------------------------------------------------


async def test_validate_and_create_reveal_nothing_without_a_relation(
    careplans: CarePlanWorld,
) -> None:
    """Whether a child has an individual plan, a consent or is in nasjonalt forløp is not
    learnt by an organisation without a relation: its plan writes answer as for a child
    that is not registered."""
    referrals = careplans.world
    with_plan = await referrals.child()
    await careplans.start_care(with_plan, KOMMUNE)
    await referrals.consent(with_plan, "individuell-plan", KOMMUNE,
                            categories=("individuell-plan",), by=KOMMUNE)  # fmt: skip
    await careplans.created(plan(with_plan), KOMMUNE)
    unknown = Child("none", "21030550231")
    answers = []
    for child in (with_plan, unknown):
        for path in ("CarePlan/$validate", "CarePlan"):
            reply = await referrals.fhir("POST", path, plan(child, status="active"), by=BUP)
            answers.append((reply.status, [i["code"] for i in reply.issues()],
                            diagnostics(reply).replace(child.fnr, "<fnr>")))  # fmt: skip
    assert answers[0] == answers[2] and answers[1] == answers[3], answers
    assert "relation" in answers[0][2]


async def test_a_hidden_and_a_missing_resource_answer_alike_on_writes_and_operations(
    careplans: CarePlanWorld,
) -> None:
    referrals = careplans.world
    child = await referrals.child()
    await careplans.start_care(child, KOMMUNE)
    team = {"resourceType": "CareTeam", "status": "active",
            "subject": {"identifier": {"system": FNR_SYSTEM, "value": child.fnr}}}  # fmt: skip
    hidden = await careplans.created(team, KOMMUNE)
    assign = {"resourceType": "Parameters", "parameter": [
        {"name": "coordinator", "valueReference": {"identifier": {"system": ORGNR_SYSTEM,
                                                                   "value": BUP}}},
        {"name": "reason", "valueString": "Overtar"}]}  # fmt: skip
    pairs: list[tuple[str, str, str, dict[str, Any]]] = [
        ("POST", f"{hidden}/$assign-coordinator", "CareTeam/no-such-team/$assign-coordinator",
         assign),
        ("PUT", hidden, "CareTeam/no-such-team", {**team, "id": hidden.split("/")[1]}),
    ]  # fmt: skip
    for method, path, missing_path, body in pairs:
        seen = await referrals.fhir(method, path, body, by=BUP)
        if method == "PUT":
            body = {**body, "id": "no-such-team"}
        missing = await referrals.fhir(method, missing_path, body, by=BUP)
        assert seen.status == missing.status, (seen.body, missing.body)
        assert seen.body.replace(hidden.split("/")[1].encode(), b"X") == missing.body.replace(
            b"no-such-team", b"X"
        )
        assert sorted(seen.headers) == sorted(missing.headers)


async def test_bundles_are_capped(stack: Stack) -> None:
    entry = {"request": {"method": "GET", "url": "Organization?_count=1"}}
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [entry] * 501}
    reply = await stack.call("POST", "", bundle)
    assert reply.status == 413, reply.body
    assert "BARNEBRO_MAX_BUNDLE_ENTRIES" in diagnostics(reply)
    bundle["type"] = "transaction"
    assert (await stack.call("POST", "", bundle)).status == 413


async def test_links_come_from_the_configured_base_url_not_the_host_header(stack: Stack) -> None:
    reply = await stack.call(
        "POST", "Practitioner", {"resourceType": "Practitioner"},
        headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"},
    )  # fmt: skip
    assert reply.status == 201, reply.body
    assert reply.headers["Location"].startswith(stack.base)
    found = await stack.call("GET", "Practitioner?_count=1", headers={"Host": "evil.example"})
    assert "evil.example" not in found.body.decode()
    assert all(link["url"].startswith(stack.base) for link in found.json()["link"])


async def test_a_body_that_does_not_decode_is_a_400(stack: Stack) -> None:
    practitioner = orjson.dumps({"resourceType": "Practitioner"})
    for encoding, raw in (("gzip", gzip.compress(practitioner)),
                          ("deflate", zlib.compress(practitioner))):  # fmt: skip
        ok = await stack.call("POST", "Practitioner", raw=raw,
                              headers={"Content-Encoding": encoding})  # fmt: skip
        assert ok.status == 201, ok.body
    before = len(matches(await stack.call("GET", "Practitioner?_count=100")))
    for encoding, raw, status in (
        ("gzip", b"not gzip at all", 400),
        ("deflate", b"\x00\x01garbage", 400),
        ("gzip", gzip.compress(practitioner)[:-6], 400),
        ("br", b"\x00not brotli", 415),
        ("gzip", gzip.compress(b" " * 1_000_000 + practitioner), 413),
    ):
        reply = await stack.call("POST", "Practitioner", raw=raw,
                                 headers={"Content-Encoding": encoding})  # fmt: skip
        assert reply.status == status, (encoding, reply.status, reply.body)
        assert reply.json()["resourceType"] == "OperationOutcome"
    assert len(matches(await stack.call("GET", "Practitioner?_count=100"))) == before


# -- migration --------------------------------------------------------------------------------


async def test_a_store_written_before_the_trust_base_is_read_correctly(
    referrals: ReferralWorld,
) -> None:
    """Before, the directory's people carried no access category or author, and the
    consent service kept no relations: after an upgrade, organisations keep their kind, care
    orders and parental responsibility stay in force, and the relations are rebuilt from the
    event stream."""
    import nats

    from services.consent import consent_spec
    from services.directory import directory_spec
    from shared.runtime import ServiceRuntime

    stack = referrals.stack
    settings = stack.settings
    ordered = await referrals.child(care_order=True)
    young = await referrals.child(age=8)
    assert stack.directory.db is not None and stack.consent.db is not None
    async with stack.directory.db.transaction() as conn:
        for table in ("resources", "resource_history"):
            await conn.execute(
                f"UPDATE {table} SET category = NULL, author = NULL"
                " WHERE res_type IN ('Patient', 'RelatedPerson')"
            )
        await conn.execute("DELETE FROM applied_migrations")  # a store from before has none
    async with stack.consent.db.transaction() as conn:
        await conn.execute("DROP TABLE consent_relations")
    await stack.consent.stop()
    await stack.directory.stop()
    nc = await nats.connect(settings.nats_url)
    try:
        await nc.jetstream().delete_consumer(settings.stream_name, "consent-relation-watch")
    finally:
        await nc.close()
    stack.directory = ServiceRuntime(directory_spec(settings), settings)
    await stack.directory.start()
    stack.consent = ServiceRuntime(consent_spec(settings), settings)
    await stack.consent.start()

    async def authority(child: Child) -> dict[str, Any]:
        path = f"authority?patient=Patient/{child.id}&purpose=informasjonsdeling"
        reply = await referrals.consent_api("GET", path, None, by=BVT)
        if reply.status != 200:
            return {}
        found: dict[str, Any] = reply.json()
        return found

    async def relations_rebuilt() -> bool:
        return bool(await authority(ordered)) and bool(await authority(young))

    await wait_for(relations_rebuilt, 15)
    assert (await authority(ordered))["rule"] == "care-order"
    young_grantors = [m for g in (await authority(young))["grantors"] for m in g["members"]]
    assert sorted(young_grantors) == sorted(young.parents)
    assert (await referrals.fhir("GET", f"Patient/{young.id}", by=SKOLE)).status == 404
    order = await referrals.fhir(
        "POST", f"Patient/{ordered.id}/$care-order", parameters(action="end"), by=BVT
    )
    assert order.status == 200, "the barnevernstjeneste keeps its kind and its care order"


async def test_the_audit_trail_does_not_audit_its_own_writes(referrals: ReferralWorld) -> None:
    """Storing an audit record (or a register change) is the service's own write: it is no
    probe of a missing resource, so the trail never feeds itself."""
    import asyncio

    stack = referrals.stack
    await referrals.child(care_order=True)
    withheld = "AuditEvent?outcome=4&_total=accurate&_count=0"

    async def count() -> int:
        reply = await stack.call("GET", withheld, token=stack.operator_token())
        assert reply.status == 200, reply.body
        return int(reply.json()["total"])

    await asyncio.sleep(1)
    before = await count()
    await asyncio.sleep(2)
    assert await count() == before


async def test_a_change_to_the_register_takes_effect_at_once(referrals: ReferralWorld) -> None:
    """The operator changes an organisation's kind or takes it out of use: its tokens follow
    within about a second (the gateway drops what it cached at the register's event)."""
    import time

    stack = referrals.stack
    operator = stack.operator_token()
    legevakt = await own_organization(referrals, LEGEVAKT)
    child = await referrals.child()
    by_number = f"Patient?identifier={FNR_SYSTEM}|{child.fnr}"
    assert len(matches(await referrals.fhir("GET", by_number, by=LEGEVAKT))) == 1

    legevakt["type"][0]["coding"][0]["code"] = "skole"
    changed = await stack.call("PUT", f"Organization/{legevakt['id']}", legevakt, token=operator)
    assert changed.status == 200, changed.body
    deadline = time.monotonic() + 5
    while matches(await referrals.fhir("GET", by_number, by=LEGEVAKT)):
        assert time.monotonic() < deadline, "a skole may not look children up"
    legevakt = changed.json()
    legevakt["active"] = False
    retired = await stack.call("PUT", f"Organization/{legevakt['id']}", legevakt, token=operator)
    assert retired.status == 200, retired.body
    deadline = time.monotonic() + 5
    while (reply := await referrals.fhir("GET", "Organization", by=LEGEVAKT)).status != 403:
        assert time.monotonic() < deadline, reply.body
    assert "not registered" in diagnostics(reply)


# -- found by attacking the running stack --------------------------------------------------------


async def test_the_care_order_holder_is_never_followed_by_include(
    referrals: ReferralWorld,
) -> None:
    child = await referrals.child(care_order=True)
    holder = referrals.organisations[BVT]
    for orgnr in (BVT, SKOLE, BUP):
        for path in (
            f"Patient?_id={child.id}&_include=Patient:care-order-organization",
            f"Patient?_id={child.id}&_include=Patient:care-order-organization:Organization",
            f"Organization?_id={holder}&_revinclude=Patient:care-order-organization",
        ):
            reply = await referrals.fhir("GET", path, by=orgnr)
            assert reply.status == 400, (orgnr, path, reply.body)
            assert CARE_ORDER_CODE not in reply.body.decode()


async def test_who_may_consent_is_learnt_only_after_taking_the_child_into_care(
    referrals: ReferralWorld,
) -> None:
    """An organisation without a relation learns nothing from a consent the rules would
    refuse: it declares that it takes the child into care first, and that is audited."""
    stack = referrals.stack
    child = await referrals.child(age=14, care_order=True)
    refused = {"patient": f"Patient/{child.id}", "purpose": "helsehjelp",
               "recipients": {"kinds": ["fastlege"]}, "categories": ["journal"],
               "signatures": [signature(f"Patient/{child.id}")]}  # fmt: skip
    unrelated = await referrals.consent_api("POST", "consents", refused, by=LEGEVAKT)
    unknown = await referrals.consent_api(
        "POST", "consents", {**refused, "patient": "Patient/no-such-child"}, by=LEGEVAKT
    )
    assert (unrelated.status, unknown.status) == (404, 404), unrelated.body
    assert "care order" not in unrelated.body.decode()
    assert unrelated.json()["issue"][0]["code"] == unknown.json()["issue"][0]["code"]
    declare = {"resourceType": "Parameters",
               "parameter": [{"name": "reason", "valueString": "Akutt innlagt"}]}  # fmt: skip
    school = await referrals.fhir("POST", f"Patient/{child.id}/$start-care", declare, by=SKOLE)
    assert school.status == 403, "only health and barnevern organisations take a child into care"
    started = await referrals.fhir("POST", f"Patient/{child.id}/$start-care", declare, by=LEGEVAKT)
    assert started.status == 200, started.body
    related = await referrals.consent_api("POST", "consents", refused, by=LEGEVAKT)
    assert related.status == 422 and "care order" in related.body.decode(), related.body
    assert (await referrals.fhir("GET", f"Patient/{child.id}", by=LEGEVAKT)).status == 200

    # Each poll is itself audited: ask for the legevakt's records only, so the page never
    # fills with the polls' own.
    by_legevakt = f"AuditEvent?patient=Patient/{child.id}&agent={ORGNR_SYSTEM}|{LEGEVAKT}"

    async def audited() -> bool:
        found = await stack.call("GET", f"{by_legevakt}&_count=100", token=stack.operator_token())
        return any("Akutt innlagt" in e.get("outcomeDesc", "") for e in matches(found))

    await wait_for(audited, 10)


async def test_who_a_child_is_is_not_a_clients_to_change(referrals: ReferralWorld) -> None:
    stack = referrals.stack
    child = await referrals.child(care_order=True)
    await referrals.submit(child)  # BUP is now related
    seen = (await referrals.fhir("GET", f"Patient/{child.id}", by=BUP)).json()
    for change, reason in (
        ({"identifier": []}, "population register"),
        ({"identifier": [{"system": FNR_SYSTEM, "value": "21030550231"}]}, "contradicts"),
        ({"birthDate": "2007-01-01", "identifier": []}, "population register"),
    ):
        reply = await referrals.fhir("PUT", f"Patient/{child.id}", {**seen, **change}, by=BUP)
        assert reply.status == 422, (change, reply.body)
        assert reason in diagnostics(reply)
    kept = (await referrals.fhir("GET", f"Patient/{child.id}", by=BUP)).json()
    assert kept["identifier"] == seen["identifier"] and kept["birthDate"] == seen["birthDate"]
    bare = {k: v for k, v in seen.items() if k not in ("birthDate", "contact")}
    bare["name"] = [{"family": "Nordmann", "given": ["Ola", "Nytt"]}]
    reply = await referrals.fhir("PUT", f"Patient/{child.id}", {**bare, "contact": seen["contact"]},
                                 by=BUP)  # fmt: skip
    assert reply.status == 200, reply.body
    assert reply.json()["birthDate"] == seen["birthDate"], "a birth date left out is kept"
    # Deleting the record would take its care order and parents with it: refused.
    own = stack.token(orgnr="910000195", kind="bup")
    registered = await stack.call("POST", "Patient", {
        "resourceType": "Patient", "identifier": [{"system": FNR_SYSTEM, "value": "12050050295"}]},
        token=own)  # fmt: skip
    assert registered.status == 201, registered.body
    young = registered.json()["id"]
    with_parent = await stack.call("POST", "RelatedPerson", parent(young, "Mor"),
                                   token=stack.register_token())  # fmt: skip
    assert with_parent.status == 201
    refused = await stack.call("DELETE", f"Patient/{young}", token=own)
    assert refused.status == 409, refused.body
    ordered = await stack.call("DELETE", f"Patient/{child.id}", token=stack.token())
    assert ordered.status in (403, 409), ordered.body
    assert (await referrals.fhir("GET", f"Patient/{child.id}", by=BVT)).status == 200


async def test_an_organisation_reference_must_name_the_organisation_its_number_names(
    careplans: CarePlanWorld,
) -> None:
    referrals = careplans.world
    child = await referrals.child()
    bup_id = referrals.organisations[BUP]
    from tests.referral_world import referral_bundle

    bundle = referral_bundle(child, by=GP)
    bundle["entry"][-1]["resource"]["requester"]["reference"] = f"Organization/{bup_id}"
    reply = await referrals.fhir("POST", "", bundle, by=GP)
    assert reply.status == 422, reply.body
    assert "another organisation than its identifier" in diagnostics(reply)
    await careplans.start_care(child, KOMMUNE)
    draft = plan(child, "behandlingsplan")
    draft["contributor"] = [{"reference": f"Organization/{bup_id}",
                             "identifier": {"system": ORGNR_SYSTEM, "value": SKOLE}}]  # fmt: skip
    reply = await referrals.fhir("POST", "CarePlan", draft, by=KOMMUNE)
    assert reply.status == 422, reply.body
    # A role or a service of the school's own cannot be found as the BUP's.
    own = {"reference": f"Organization/{referrals.organisations[SKOLE]}"}
    bups = {**own, "identifier": {"system": ORGNR_SYSTEM, "value": BUP}}
    for resource_type, element in (("PractitionerRole", "organization"),
                                   ("HealthcareService", "providedBy")):  # fmt: skip
        claimed = {"resourceType": resource_type, element: bups}
        reply = await referrals.fhir("POST", resource_type, claimed, by=SKOLE)
        assert reply.status == 422, reply.body
        assert "its reference does not" in diagnostics(reply)
        honest = {"resourceType": resource_type, element: own}
        reply = await referrals.fhir("POST", resource_type, honest, by=SKOLE)
        assert reply.status == 201, reply.body


async def test_a_care_team_names_only_who_its_members_are(careplans: CarePlanWorld) -> None:
    """A school's role cannot coordinate on the BUP's behalf, another child and its parents
    are not members, and no party is invented as a contained resource."""
    world = careplans.world
    child, other = await world.child(age=14), await world.child(age=9)
    await careplans.consent(child, "ansvarsgruppe", BUP, ("careteam",), by=KOMMUNE)
    reference = await careplans.created(team(child, member(KOMMUNE, "koordinator")), by=KOMMUNE)
    school_role = await careplans.created(
        {"resourceType": "PractitionerRole",
         "organization": {"reference": f"Organization/{world.organisations[SKOLE]}"}},
        by=SKOLE,
    )  # fmt: skip
    for_bup = {"resourceType": "Parameters", "parameter": [
        {"name": "coordinator", "valueReference": {"reference": school_role}},
        {"name": "onBehalfOf", "valueReference": {"identifier": {"system": ORGNR_SYSTEM,
                                                                 "value": BUP}}},
        {"name": "reason", "valueString": "Skolen tar over for BUP"},
    ]}  # fmt: skip
    reply = await world.fhir("POST", f"{reference}/$assign-coordinator", for_bup, by=KOMMUNE)
    assert reply.status == 422, reply.body
    assert "its own organisation" in diagnostics(reply)
    stored = (await world.fhir("GET", reference, by=KOMMUNE)).json()
    service = await careplans.created(
        {"resourceType": "HealthcareService", "name": "Skolehelse",
         "providedBy": {"reference": f"Organization/{world.organisations[SKOLE]}"}},
        by=SKOLE,
    )  # fmt: skip
    doctor = await careplans.created(
        {"resourceType": "Practitioner", "name": [{"family": "Lege"}]}, by=SKOLE
    )
    by_number = {"identifier": {"system": FNR_SYSTEM, "value": other.fnr}}
    for stranger in (
        {"reference": f"Patient/{other.id}"},
        {"reference": other.parents[0]},
        by_number,
        {**by_number, "type": "RelatedPerson"},
        {"reference": service},
        {"reference": reference},
        {"reference": doctor},  # a practitioner acts for an organisation it names
        {"display": "Rektor"},
    ):
        entry = {**person(child.parents[0], "forelder"), "member": stranger}
        added = {**stored, "participant": [*stored["participant"], entry]}
        reply = await careplans.put(reference, added, by=KOMMUNE)
        assert reply.status == 422, (stranger, reply.body)
    own = {**stored, "participant": [*stored["participant"], person(child.parents[0], "forelder")]}
    assert (await careplans.put(reference, own, by=KOMMUNE)).status == 200
    contained = {
        **team(child, member(KOMMUNE, "behandler")),
        "contained": [
            {
                "resourceType": "Organization",
                "id": "o",
                "identifier": [{"system": ORGNR_SYSTEM, "value": SKOLE}],
            }
        ],
    }
    contained["participant"].append({"member": {"reference": "#o"}})  # fmt: skip
    reply = await careplans.create(contained, KOMMUNE)
    assert reply.status == 422, reply.body
    assert "contained" in diagnostics(reply)


async def test_a_misspelt_identifier_system_is_refused_wherever_it_is(
    careplans: CarePlanWorld,
) -> None:
    world = careplans.world
    child = await world.child()
    await careplans.start_care(child, KOMMUNE)
    draft = plan(child, "behandlingsplan")
    draft["contributor"] = [{"identifier": {"system": ORGNR_SYSTEM + " ", "value": SKOLE}}]
    reply = await world.fhir("POST", "CarePlan", draft, by=KOMMUNE)
    assert reply.status == 422, reply.body
    assert reply.json()["issue"][0]["expression"] == ["CarePlan.contributor[0].identifier.system"]
    # However written, a person number under another system is no second record of a child.
    fnr = next(i for i in (await world.fhir("GET", f"Patient/{child.id}", by=KOMMUNE)).json()
               ["identifier"] if i["system"] == FNR_SYSTEM)["value"]  # fmt: skip
    for system in (
        FNR_SYSTEM + ".",
        FNR_SYSTEM + "\u200b",
        "2.16.578.1.12.4.1.4.1",
        "urn%3Aoid%3A2.16.578.1.12.4.1.4.1",
        FNR_SYSTEM + "?x",
        "urn:example:x",
        None,
    ):
        identifier = {"value": fnr, **({"system": system} if system else {})}
        shadow = {"resourceType": "Patient", "identifier": [identifier]}
        reply = await world.fhir("POST", "Patient", shadow, by=KOMMUNE)
        assert reply.status == 422, (system, reply.body)  # fmt: skip
    for lookalike in ("urn:oid:2.16.578.1.12.4.1.4.4/", "urn:oid:2.16.578.1.12.4.1.4.04"):
        doctor = {"resourceType": "Practitioner",
                  "identifier": [{"system": lookalike, "value": "9144889"}]}  # fmt: skip
        reply = await world.fhir("POST", "Practitioner", doctor, by=SKOLE)
        assert reply.status == 422, (lookalike, reply.body)
        assert "is written urn:oid:2.16.578.1.12.4.1.4.4" in diagnostics(reply)


async def test_a_school_takes_part_only_while_a_consent_names_it(
    careplans: CarePlanWorld,
) -> None:
    """A school on the care team sees the child, its parents and the team while the consent
    that names it is active; when it is withdrawn, membership leaves it nothing (by id or by
    search), while a health member keeps its own standing."""
    world = careplans.world
    child = await world.child(age=12)
    consent = await careplans.consent(child, "ansvarsgruppe", SKOLE, ("careteam",), by=KOMMUNE)
    reference = await careplans.created(
        team(child, member(KOMMUNE, "koordinator"), member(SKOLE, "hovedkontakt")), by=KOMMUNE
    )
    reads = (f"Patient/{child.id}", reference)
    searches = (f"RelatedPerson?patient=Patient/{child.id}", f"CareTeam?patient=Patient/{child.id}")
    for path in reads:
        assert (await world.fhir("GET", path, by=SKOLE)).status == 200, path
    for path in searches:
        assert (await world.fhir("GET", path, by=SKOLE)).json()["entry"], path
    reply = await world.consent_api(
        "POST", f"consents/{consent.split('/')[1]}/withdrawal",
        {"by": child.parents[0], "reason": "Vil ikke dele"}, by=KOMMUNE,
    )  # fmt: skip
    assert reply.status == 200, reply.body
    view = careplans.careplan.consent_view
    directory_view = world.stack.directory.consent_view
    assert view is not None and directory_view is not None

    async def withdrawn() -> bool:
        states = (view.state(child.id), directory_view.state(child.id))
        return all(state is not None and not state.grants for state in states)

    await wait_for(withdrawn)
    for path in reads:
        assert (await world.fhir("GET", path, by=SKOLE)).status == 404, path
    for path in searches:
        assert (await world.fhir("GET", path, by=SKOLE)).json()["entry"] == [], path
    assert (await world.fhir("GET", reference, by=KOMMUNE)).status == 200


async def test_nothing_that_only_looks_like_a_care_order_is_recorded(
    referrals: ReferralWorld,
) -> None:
    child = await referrals.child()
    seen = (await referrals.fhir("GET", f"Patient/{child.id}", by=BVT)).json()
    for system, code in (
        (CONTACT_RELATIONSHIP_SYSTEM, "Omsorgsovertakelse"),
        (CONTACT_RELATIONSHIP_SYSTEM + "/", CARE_ORDER_CODE),
        (CONTACT_RELATIONSHIP_SYSTEM.upper(), CARE_ORDER_CODE),
    ):
        contact = care_order_contact(referrals.organisations[BVT])
        contact["relationship"] = [{"coding": [{"system": system, "code": code}]}]
        reply = await referrals.fhir("PUT", f"Patient/{child.id}", {**seen, "contact": [contact]},
                                     by=BVT)  # fmt: skip
        assert reply.status == 422, (system, code, reply.body)


async def test_an_hpr_number_is_registered_only_by_health_organisations(stack: Stack) -> None:
    hpr = {"system": "urn:oid:2.16.578.1.12.4.1.4.4", "value": "9144889"}
    practitioner = {"resourceType": "Practitioner", "identifier": [hpr]}
    school = stack.token(orgnr="910000039", kind="skole")
    reply = await stack.call("POST", "Practitioner", practitioner, token=school)
    assert reply.status == 403, reply.body
    assert (await stack.call("POST", "Practitioner", practitioner)).status == 201


async def test_care_order_dates_make_sense(referrals: ReferralWorld) -> None:
    stack = referrals.stack
    child = await referrals.child(age=6)
    holder = stack.token(orgnr="910000187", kind="barnevernstjeneste")
    path = f"Patient/{child.id}/$care-order"
    for wrong in ("1990-01-01", "2099-01-01"):
        reply = await stack.call("POST", path, parameters("start", wrong), token=holder)
        assert reply.status == 422, (wrong, reply.body)
    started = await stack.call("POST", path, parameters("start", "2026-03-01"), token=holder)
    assert started.status == 200, started.body
    early = await stack.call("POST", path, parameters("end", "2026-01-01"), token=holder)
    assert early.status == 422, early.body
    ended = await stack.call("POST", path, parameters("end", "2026-04-01"), token=holder)
    assert ended.status == 200, ended.body


async def test_headers_and_parameters_that_do_not_parse_are_4xx(stack: Stack) -> None:
    import aiohttp

    url = f"{stack.base}/Patient/x"
    raw_headers = {"Authorization": f"Bearer {stack.token()}"}
    async with aiohttp.ClientSession() as session:
        for name in ("Barnebro-Emergency-Reason", "If-None-Exist", "Prefer"):
            headers = {**raw_headers, name: "bevisstl\xf8s".encode("latin-1").decode("latin-1")}
            async with session.get(url, headers=headers) as response:
                assert 400 <= response.status < 500, (name, response.status)
    validate = {"resourceType": "Parameters", "parameter": "x"}
    reply = await stack.call("POST", "Patient/$validate", validate)
    assert 200 <= reply.status < 500 and reply.status != 201, reply.body


async def test_a_conditional_create_finds_a_child_as_a_look_up_does(
    referrals: ReferralWorld,
) -> None:
    child = await referrals.child()
    body = {"resourceType": "Patient", "identifier": [{"system": FNR_SYSTEM, "value": child.fnr}]}
    condition = {"If-None-Exist": f"identifier={FNR_SYSTEM}|{child.fnr}"}
    reply = await referrals.fhir("POST", "Patient", body, by=LEGEVAKT, headers=condition)
    assert reply.status == 200, reply.body
    assert reply.json()["id"] == child.id
    assert "SUBSETTED" in [t["code"] for t in reply.json()["meta"]["tag"]]
    # Where the child is, not how often its record changed: no version, as a look-up.
    assert "ETag" not in reply.headers and "Last-Modified" not in reply.headers
    assert reply.headers["Location"].endswith(f"/Patient/{child.id}")


async def test_naming_a_school_or_nav_on_a_plan_needs_a_consent_that_releases_it(
    careplans: CarePlanWorld,
) -> None:
    referrals = careplans.world
    child = await referrals.child()
    await careplans.start_care(child, BUP)
    draft = plan(child, "behandlingsplan", contributors=(SKOLE,))
    reply = await referrals.fhir("POST", "CarePlan", draft, by=BUP)
    assert reply.status == 422, reply.body
    assert SKOLE in diagnostics(reply)
    assert (await referrals.fhir("GET", f"Patient/{child.id}", by=SKOLE)).status == 404
    await referrals.consent(child, "informasjonsdeling", SKOLE, ("careplan",), by=BUP)
    created = await referrals.fhir("POST", "CarePlan", draft, by=BUP)
    assert created.status == 201, created.body
    shared = await referrals.fhir("GET", f"CarePlan/{created.json()['id']}", by=SKOLE)
    assert shared.status == 200


async def test_a_transaction_that_reads_too_much_is_refused_whole(stack: Stack) -> None:
    big = {"resourceType": "Practitioner", "name": [{"family": "N" * 300_000}]}
    created = await stack.call("POST", "Practitioner", big)
    assert created.status == 201, created.body
    path = f"Practitioner/{created.json()['id']}"
    before = len(matches(await stack.call("GET", "Practitioner?_count=100")))
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": {"resourceType": "Practitioner"},
             "request": {"method": "POST", "url": "Practitioner"}},
            *({"request": {"method": "GET", "url": path}} for _ in range(3)),
        ],
    }  # fmt: skip
    reply = await stack.call("POST", "", bundle)
    assert reply.status == 413, reply.body
    assert len(matches(await stack.call("GET", "Practitioner?_count=100"))) == before


# -- found by attacking the running stack again ------------------------------------------------


async def test_a_client_neither_adds_a_person_number_nor_sets_a_birth_date(
    referrals: ReferralWorld,
) -> None:
    stack = referrals.stack
    child = await referrals.child()
    await referrals.submit(child)  # BUP is related
    seen = (await referrals.fhir("GET", f"Patient/{child.id}", by=BUP)).json()
    another = {"system": "urn:oid:2.16.578.1.12.4.1.4.2", "value": "41010550031"}
    added = {**seen, "identifier": [*seen["identifier"], another]}
    reply = await referrals.fhir("PUT", f"Patient/{child.id}", added, by=BUP)
    assert reply.status == 422, reply.body
    assert "population register" in diagnostics(reply)
    # A child registered by D-nummer without a birth date gets one from the register only.
    d_child = await stack.call(
        "POST", "Patient",
        {"resourceType": "Patient",
         "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.2", "value": "46061460047"}]},
        token=referrals.token(BVT),
    )  # fmt: skip
    assert d_child.status == 201, d_child.body
    registered = d_child.json()
    assert "birthDate" not in registered
    aged = {**registered, "birthDate": "2000-01-01"}
    reply = await referrals.fhir("PUT", f"Patient/{registered['id']}", aged, by=BVT)
    assert reply.status == 422, reply.body
    by_register = await stack.call(
        "PUT", f"Patient/{registered['id']}", {**registered, "birthDate": "2014-06-06"},
        token=stack.register_token(),
    )  # fmt: skip
    assert by_register.status == 200, by_register.body


async def test_a_client_states_a_birth_date_only_as_the_fodselsnummer_gives_it(
    referrals: ReferralWorld,
) -> None:
    """A D-nummer's date may be a registration date, a hjelpenummer has none: a birth date a
    client states beside them (or alone) would let it choose which age rule decides who
    consents, so only the population register states it."""
    stack = referrals.stack
    d_nummer = {"system": "urn:oid:2.16.578.1.12.4.1.4.2", "value": "50031577842"}
    for identifiers in ([d_nummer], []):
        claimed = {"resourceType": "Patient", "identifier": identifiers, "birthDate": "2000-01-01"}
        reply = await referrals.fhir("POST", "Patient", claimed, by=BVT)
        assert reply.status == 422, reply.body
        assert "population register" in diagnostics(reply)
        assert reply.json()["issue"][0]["expression"] == ["Patient.birthDate"]
    child = (await referrals.fhir("GET", f"Patient/{(await referrals.child()).id}", by=BVT)).json()
    assert child["birthDate"], "a fødselsnummer gives the birth date it states"
    # Without the birth date the client registers the child (the refused creates wrote
    # nothing: no 409), and the register states it.
    bare = await referrals.fhir(
        "POST", "Patient", {"resourceType": "Patient", "identifier": [d_nummer]}, by=BVT
    )
    assert bare.status == 201, bare.body
    dated = {**bare.json(), "birthDate": "2015-03-10"}
    by_register = await stack.call(
        "PUT", f"Patient/{dated['id']}", dated, token=stack.register_token()
    )
    assert by_register.status == 200, by_register.body


async def test_a_create_refused_as_a_duplicate_is_audited_as_a_look_up(
    referrals: ReferralWorld,
) -> None:
    """A 409 for a person number tells the caller the child is registered, as a look-up
    does: it is in the audit trail, withheld, with the child for the operator only."""
    stack = referrals.stack
    child = await referrals.child()
    seen = (await referrals.fhir("GET", f"Patient/{child.id}", by=BVT)).json()
    fnr = next(i for i in seen["identifier"] if i["system"] == FNR_SYSTEM)
    again = {"resourceType": "Patient", "identifier": [fnr]}
    reply = await referrals.fhir("POST", "Patient", again, by=LEGEVAKT)
    assert reply.status == 409, reply.body
    assert child.id.encode() not in reply.body
    operator = stack.operator_token()
    probes = (
        f"AuditEvent?withheld-patient=Patient/{child.id}&withheld-basis=already-registered"
        f"&agent={ORGNR_SYSTEM}|{LEGEVAKT}"
    )

    async def audited() -> bool:
        return bool(matches(await stack.call("GET", probes, token=operator)))

    await wait_for(audited, 10)
    auditor = stack.token(orgnr=LEGEVAKT, kind="legevakt", scope="system/AuditEvent.rs")
    own = matches(await stack.call("GET", "AuditEvent?subtype=create", token=auditor))
    assert own and child.id not in str(own), own


async def test_the_registers_other_facts_and_reference_kinds_hold(
    referrals: ReferralWorld,
) -> None:
    """Whether a child has died, which records are the same person and how its number is
    used are the register's; an organisation element names an organisation."""
    stack = referrals.stack
    child, other = await referrals.child(), await referrals.child()
    path = f"Patient/{child.id}"
    seen = (await referrals.fhir("GET", path, by=BVT)).json()
    retired = [{**i, "use": "old"} if i["system"] == FNR_SYSTEM else i for i in seen["identifier"]]
    person = {"reference": f"Patient/{other.id}"}
    for change, where in (
        ({"identifier": retired}, "Patient.identifier"),
        ({"deceasedBoolean": True}, "Patient.deceasedBoolean"),
        ({"link": [{"other": {"reference": f"Patient/{other.id}"}, "type": "replaced-by"}]},
         "Patient.link"),
        ({"managingOrganization": person}, "Patient.managingOrganization"),
        ({"contact": [{"organization": person}]}, "Patient.contact[0].organization"),
    ):  # fmt: skip
        reply = await referrals.fhir("PUT", path, {**seen, **change}, by=BVT)
        assert reply.status == 422, (change, reply.body)
        assert where in str(reply.json()["issue"]), (where, reply.body)
    unchanged = await referrals.fhir("GET", path, by=BVT)
    assert unchanged.json()["meta"]["versionId"] == seen["meta"]["versionId"]
    register = stack.register_token()
    as_register = (await stack.call("GET", path, token=register)).json()
    died = await stack.call("PUT", path, {**as_register, "deceasedBoolean": True}, token=register)
    assert died.status == 200, died.body


async def test_an_open_care_order_is_ended_not_removed(referrals: ReferralWorld) -> None:
    child = await referrals.child(care_order=True)
    path = f"Patient/{child.id}"
    seen = (await referrals.fhir("GET", path, by=BVT)).json()
    without = {k: v for k, v in seen.items() if k != "contact"}
    reply = await referrals.fhir("PUT", path, without, by=BVT)
    assert reply.status == 422, reply.body
    assert "not removed" in diagnostics(reply)
    assert (await referrals.fhir("GET", path, by=BVT)).json() == seen


async def test_a_time_of_birth_is_the_registers_too(referrals: ReferralWorld) -> None:
    d_nummer = {"system": "urn:oid:2.16.578.1.12.4.1.4.2", "value": "43041570033"}
    born = {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                           "valueDateTime": "2000-01-01T10:00:00+01:00"}]}  # fmt: skip
    claimed = {"resourceType": "Patient", "identifier": [d_nummer], "_birthDate": born}
    reply = await referrals.fhir("POST", "Patient", claimed, by=BVT)
    assert reply.status == 422, reply.body
    bare = await referrals.fhir(
        "POST", "Patient", {"resourceType": "Patient", "identifier": [d_nummer]}, by=BVT
    )
    assert bare.status == 201, bare.body
    later = {**bare.json(), "_birthDate": born}
    reply = await referrals.fhir("PUT", f"Patient/{bare.json()['id']}", later, by=BVT)
    assert reply.status == 422, reply.body


async def test_only_a_fastlege_is_named_a_childs_gp(referrals: ReferralWorld) -> None:
    child = await referrals.child()
    seen = (await referrals.fhir("GET", f"Patient/{child.id}", by=BVT)).json()
    nav = {"identifier": {"system": ORGNR_SYSTEM, "value": "910000144"}}
    school = {"reference": f"Organization/{referrals.organisations[SKOLE]}"}
    gp_number = {"identifier": {"system": ORGNR_SYSTEM, "value": GP},
                 "reference": f"Organization/{referrals.organisations[BUP]}"}  # fmt: skip
    for named in (nav, school, gp_number):
        reply = await referrals.fhir(
            "PUT", f"Patient/{child.id}", {**seen, "generalPractitioner": [named]}, by=BVT
        )
        assert reply.status == 422, (named, reply.body)


async def test_an_organisation_reads_its_own_refusals_without_what_it_was_refused(
    referrals: ReferralWorld,
) -> None:
    stack = referrals.stack
    child = await referrals.child()
    referral = await referrals.submit(child)
    for path in (referral.ref, "ServiceRequest/no-such-referral"):
        assert (await referrals.fhir("GET", path, by=SKOLE)).status == 404
    auditor = stack.token(orgnr=SKOLE, kind="skole", scope="system/AuditEvent.rs")
    mine = "AuditEvent?outcome=4&_count=50"

    async def refusals() -> list[dict[str, Any]]:
        events = matches(await stack.call("GET", mine, token=auditor))
        return [e for e in events if e["subtype"][0]["code"] == "read"]

    await wait_for(lambda: _nonempty(refusals()), 10)
    await wait_for(lambda: _two(refusals()), 10)
    seen = [
        {k: v for k, v in entity.items() if k != "what"}
        for event in await refusals()
        for entity in event["entity"]
    ]
    assert seen[0] == seen[1], "a hidden and a missing resource read back alike"
    assert child.id not in str(await refusals())
    withheld = f"AuditEvent?withheld-patient=Patient/{child.id}"
    assert (await stack.call("GET", withheld, token=auditor)).status == 403
    operator = matches(await stack.call("GET", withheld, token=stack.operator_token()))
    assert operator, "the operator finds who was refused what about the child"

    async def found(query: str, token: str) -> set[str]:
        events = matches(await stack.call("GET", f"{mine}&{query}", token=token))
        return {x["what"]["reference"] for e in events for x in e["entity"] if "what" in x}

    both = {referral.ref, "ServiceRequest/no-such-referral"}
    assert await found("basis=withheld", auditor) >= both
    for why in ("none", "not-found"):
        assert not await found(f"basis={why}", auditor) & both, why
    refused = await stack.call("GET", f"{mine}&withheld-basis=none", token=auditor)
    assert refused.status == 403, refused.body
    by_operator = stack.operator_token()
    assert referral.ref in await found("withheld-basis=none", by_operator)
    assert "ServiceRequest/no-such-referral" in await found("withheld-basis=not-found", by_operator)


async def _two(found: Any) -> bool:
    return len(await found) >= 2


async def test_emergency_access_reads_and_changes_nothing(referrals: ReferralWorld) -> None:
    stack = referrals.stack
    child = await referrals.child()
    glass = {GLASS: child.id, REASON: "Bevisstløs"}
    doctor = referrals.token(LEGEVAKT, hpr="9144889")
    seen = await stack.call("GET", f"Patient/{child.id}", token=doctor, headers=glass)
    assert seen.status == 200, seen.body
    changed = {**seen.json(), "gender": "other"}
    reply = await stack.call("PUT", f"Patient/{child.id}", changed, token=doctor, headers=glass)
    missing = await stack.call(
        "PUT", "Patient/no-such-child", {**changed, "id": "no-such-child"}, token=doctor,
        headers=glass,
    )  # fmt: skip
    assert reply.status == missing.status == 405, reply.body
    assert (await stack.call("GET", f"Patient/{child.id}", token=doctor)).status == 404


async def test_more_bad_input_is_a_clear_4xx(referrals: ReferralWorld) -> None:
    import aiohttp

    stack = referrals.stack
    child = await referrals.child()
    await referrals.start_care(child, BVT)
    asked = f"authority?patient=Patient/{child.id}&purpose=informasjonsdeling"
    for extra, named in (("&date=x", "date"), ("&daily_care=maybe", "daily_care")):
        reply = await referrals.consent_api("GET", asked + extra, None, by=BVT)
        assert reply.status == 400, reply.body
        assert named in diagnostics(reply) and "purpose" not in diagnostics(reply)
    assert (await referrals.consent_api("GET", asked, None, by=BVT)).status == 200
    async with aiohttp.ClientSession() as session:
        for bearer in ("Bearer \xff\xfe", "Bearer abc\x80.def.ghi"):
            async with session.get(f"{stack.base}/Patient", headers={"Authorization": bearer}) as r:
                assert 400 <= r.status < 500, (bearer, r.status)
    for operation in ("$start-care", "$care-order"):
        for parameter in (1, True, "x"):
            body = {"resourceType": "Parameters", "parameter": parameter}
            reply = await referrals.fhir("POST", f"Patient/{child.id}/{operation}", body, by=BVT)
            assert reply.status == 400, (operation, parameter, reply.body)
    twice = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "action", "valueCode": "start"},
            {"name": "action", "valueCode": "end"},
        ],
    }
    reply = await referrals.fhir("POST", f"Patient/{child.id}/$care-order", twice, by=BVT)
    assert reply.status == 400, reply.body
    far = await referrals.fhir(
        "POST", f"Patient/{child.id}/$care-order", parameters("end", "2099-01-01"), by=BVT
    )
    assert far.status == 422, far.body
    for system in ("URN:OID:2.16.578.1.12.4.1.4.4", "urn:oid:2.16.578.1.12.4.1.4.4 "):
        fake = {"resourceType": "Practitioner", "identifier": [{"system": system,
                                                                "value": "9144897"}]}  # fmt: skip
        reply = await referrals.fhir("POST", "Practitioner", fake, by=SKOLE)
        assert reply.status == 422, (system, reply.body)


async def test_a_plan_names_an_organisation_by_its_number(careplans: CarePlanWorld) -> None:
    referrals = careplans.world
    child = await referrals.child()
    await careplans.start_care(child, BUP)
    draft = plan(child, "kriseplan")
    draft["contributor"] = [{"reference": f"Organization/{referrals.organisations[SKOLE]}"}]
    reply = await referrals.fhir("POST", "CarePlan", draft, by=BUP)
    assert reply.status == 422, reply.body


async def test_a_look_up_tells_nothing_of_the_childs_versions(referrals: ReferralWorld) -> None:
    child = await referrals.child(care_order=True)
    found = matches(
        await referrals.fhir("GET", f"Patient?identifier={FNR_SYSTEM}|{child.fnr}", by=LEGEVAKT)
    )
    assert found[0]["meta"] == {"tag": [{"system": found[0]["meta"]["tag"][0]["system"],
                                         "code": "SUBSETTED"}]}  # fmt: skip


async def test_the_consent_api_decodes_bodies_as_the_fhir_api_does(stack: Stack) -> None:
    """A compressed or undecodable body on /consent/v1 is answered as on /fhir: decoded,
    or a 4xx; never a 500."""
    url = f"http://127.0.0.1:{stack.settings.http_port}/consent/v1/decisions"
    question = orjson.dumps({"patient": "Patient/unknown", "category": "journal"})
    json_type = {"Content-Type": "application/json"}
    plain = await stack.call("POST", url, raw=question, headers=json_type)
    compressed = await stack.call(
        "POST", url, raw=gzip.compress(question), headers={**json_type, "Content-Encoding": "gzip"}
    )
    assert (compressed.status, compressed.body) == (plain.status, plain.body), "decoded alike"
    for encoding, raw, status in (("gzip", b"not gzip at all", 400), ("br", b"\x00no", 415)):
        headers = {**json_type, "Content-Encoding": encoding}
        reply = await stack.call("POST", url, raw=raw, headers=headers)
        assert reply.status == status, (encoding, reply.status, reply.body)


async def test_only_reading_the_open_paths_needs_no_token(stack: Stack) -> None:
    """`metadata` and the OpenAPI document are open to GET; any other method on them is
    authenticated first, like every other request."""
    for method in ("POST", "PUT", "DELETE"):
        reply = await stack.call(method, "metadata", {}, authenticated=False)
        assert reply.status == 401, (method, reply.status, reply.body)
    with_token = await stack.call("POST", "metadata", {"resourceType": "Patient"})
    assert 400 <= with_token.status < 500, with_token.body


async def test_validate_needs_the_create_scope(stack: Stack) -> None:
    body = {"resourceType": "Practitioner", "name": [{"family": "Hansen"}]}
    creating = stack.token(scope="system/Practitioner.c")
    reading = stack.token(scope="system/Practitioner.r")
    assert (await stack.call("POST", "Practitioner/$validate", body, token=creating)).status == 200
    assert (await stack.call("POST", "Practitioner/$validate", body, token=reading)).status == 403
