"""FHIR API consistency, as an outside tester probes it: an operation on a resource the
caller may not see answers exactly as on a missing one, and the same request answers the
same way on every path (format negotiation, unknown parameters, subsetted tags, history
counts)."""

from __future__ import annotations

from typing import Any

from shared.identifiers import FNR_SYSTEM, ORGNR_SYSTEM
from tests.careplan_world import CarePlanWorld
from tests.consent_world import BVT as CONSENT_BVT
from tests.consent_world import GP, World
from tests.journal_service import note
from tests.referral_world import BUP, BVT, KOMMUNE, ReferralWorld
from tests.subscription_world import SubscriptionWorld, subscription
from tests.support import Reply, Stack, comparable

MISSING = "no-such-id"


def assert_as_missing(hidden: Reply, hidden_id: str, missing: Reply) -> None:
    assert comparable(hidden, hidden_id) == comparable(missing, MISSING), (
        hidden.status,
        hidden.body,
        missing.status,
        missing.body,
    )


def care_order(action: str, successor: str | None = None) -> dict[str, Any]:
    given: list[dict[str, Any]] = [{"name": "action", "valueCode": action}]
    if successor:
        given.append(
            {"name": "successor", "valueIdentifier": {"system": ORGNR_SYSTEM, "value": successor}}
        )
    return {"resourceType": "Parameters", "parameter": given}


async def test_a_care_order_of_a_hidden_child_answers_as_for_a_missing_one(
    referrals: ReferralWorld,
) -> None:
    """Ending or transferring a care order of a child the barnevernstjeneste has no relation
    to tells nothing about the child: the answer is the one for an id that is not known."""
    stack = referrals.stack
    child = await referrals.child(care_order=True)
    stranger = stack.token(orgnr="910000187", kind="barnevernstjeneste")
    assert (await stack.call("GET", f"Patient/{child.id}", token=stranger)).status == 404
    for body in (care_order("end"), care_order("transfer", successor=BVT)):
        hidden = await stack.call("POST", f"Patient/{child.id}/$care-order", body, token=stranger)
        missing = await stack.call("POST", f"Patient/{MISSING}/$care-order", body, token=stranger)
        assert hidden.status == 404, hidden.body
        assert_as_missing(hidden, child.id, missing)
    # The holder still ends its own; nothing was changed by the probes.
    seen = (await referrals.fhir("GET", f"Patient/{child.id}", by=BVT)).json()
    assert seen["meta"]["versionId"] == "1"
    ended = await referrals.fhir("POST", f"Patient/{child.id}/$care-order", care_order("end"),
                                 by=BVT)  # fmt: skip
    assert ended.status == 200, ended.body


async def test_subscription_operations_on_another_owners_answer_as_for_a_missing_one(
    subscriptions: SubscriptionWorld,
) -> None:
    world = subscriptions.referrals
    body = subscription("referral-status", endpoint="https://partner.example/hook")
    sub_id = await subscriptions.subscribe(body, by=BUP)
    stranger = world.stack.token(orgnr="910000187", kind="barnevernstjeneste")
    for operation in ("$status", "$events"):
        for method, payload in (("GET", None), ("POST", {"resourceType": "Parameters"})):
            hidden = await world.stack.call(
                method, f"Subscription/{sub_id}/{operation}", payload, token=stranger
            )
            missing = await world.stack.call(
                method, f"Subscription/{MISSING}/{operation}", payload, token=stranger
            )
            assert hidden.status == 404, hidden.body
            assert_as_missing(hidden, sub_id, missing)


async def test_a_history_with_count_zero_answers_its_total_as_a_search_does(
    world: World,
) -> None:
    child = await world.child(9)
    own = await world.fhir("POST", "DocumentReference", note(child.id, "Fastlegens"), by=GP)
    assert own.status == 201, own.body
    hidden = await world.note(child, "Bekymring", by=CONSENT_BVT)
    for path, by in (
        ("DocumentReference/_history", GP),
        (f"{own.json()['resourceType']}/{own.json()['id']}/_history", GP),
        (f"{hidden}/_history", CONSENT_BVT),
    ):
        counted = await world.fhir("GET", f"{path}?_summary=count", by=by)
        zero = await world.fhir("GET", f"{path}?_count=0", by=by)
        assert zero.status == 200, zero.body
        bundle = zero.json()
        assert "entry" not in bundle, bundle
        assert (bundle["type"], bundle["total"]) == ("history", counted.json()["total"])
    seen = await world.fhir("GET", "DocumentReference/_history", by=GP)
    assert world_total(seen) == (await world.fhir(
        "GET", "DocumentReference/_history?_count=0", by=GP)).json()["total"]  # fmt: skip
    hidden_zero = await world.fhir("GET", f"{hidden}/_history?_count=0", by=GP)
    missing = await world.fhir("GET", f"DocumentReference/{MISSING}/_history?_count=0", by=GP)
    assert_as_missing(hidden_zero, hidden.split("/")[1], missing)


def world_total(reply: Reply) -> int:
    """The versions a history page holds (a page of at most 50: the world is small)."""
    assert reply.status == 200, reply.body
    return len(reply.json().get("entry", []))


SUBSETTED_LOOKALIKES = [
    ("tag", {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
             "code": "subsetted"}),
    ("tag", {"code": "SUBSETTED"}),
    ("tag", {"system": "http://hl7.org/fhir/v3/ObservationValue", "code": "SUBSETTED"}),
    ("tag", {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue/",
             "code": "SUBSETTED"}),
    ("security", {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                  "code": "SUBSETTED"}),
]  # fmt: skip


async def test_every_subsetted_lookalike_is_refused_on_write_and_in_validate(
    stack: Stack,
) -> None:
    created = await stack.call("POST", "Practitioner", {"resourceType": "Practitioner"})
    assert created.status == 201, created.body
    current = created.json()
    for element, coding in SUBSETTED_LOOKALIKES:
        meta = {element: [coding]}
        body = {"resourceType": "Practitioner", "meta": meta, "gender": "female"}
        for method, path, sent in (
            ("POST", "Practitioner", body),
            ("PUT", f"Practitioner/{current['id']}", {**body, "id": current["id"]}),
        ):
            reply = await stack.call(method, path, sent)
            assert reply.status == 422, (coding, method, reply.body)
            assert reply.issues()[0]["expression"] == [f"Practitioner.meta.{element}"]
        checked = await stack.call("POST", "Practitioner/$validate", body)
        assert checked.status == 200, checked.body
        assert "SUBSETTED" in checked.issues()[0]["diagnostics"], (coding, checked.body)
    after = await stack.call("GET", f"Practitioner/{current['id']}")
    assert after.json()["meta"]["versionId"] == "1"
    assert "gender" not in after.json()


NEGOTIATED = [
    ("_format=xml", {}, 406),
    ("", {"Accept": "application/fhir+xml"}, 406),
    ("_format=json&_format=xml", {}, 400),
    ("_format=json&_format=json", {}, 400),
    ("_format=application/fhir+json;fhirVersion=5.0", {}, 406),
    ("", {"Accept": "application/fhir+json; fhirVersion=5.0"}, 406),
    ("", {"Accept": "application/fhir+json; fhirVersion=4.0"}, 200),
    ("_format=application/fhir+json;fhirVersion=4.0", {}, 200),
    ("", {"Accept": "application/fhir+json; fhirVersion=5.0, application/json"}, 200),
    ("_format=json", {"Accept": "text/html"}, 200),
]


async def test_every_path_negotiates_the_format_alike(stack: Stack) -> None:
    """The CapabilityStatement, a search, a read and a write answer a format request the
    same way: XML or another FHIR version is a 406, two `_format`s a 400."""
    created = await stack.call("POST", "Practitioner", {"resourceType": "Practitioner"})
    assert created.status == 201, created.body
    read = f"Practitioner/{created.json()['id']}"
    for query, headers, status in NEGOTIATED:
        answers = []
        for method, path in (("GET", "metadata"), ("GET", "Practitioner"), ("GET", read),
                             ("POST", "Practitioner/$validate")):  # fmt: skip
            body = {"resourceType": "Practitioner"} if method == "POST" else None
            reply = await stack.call(method, f"{path}?{query}", body, headers=headers)
            assert reply.status == status, (path, query, headers, reply.body)
            if status != 200:
                answers.append(reply.body)
        assert len(set(answers)) <= 1, (query, headers, answers)


async def test_every_write_path_refuses_unknown_query_parameters_alike(
    referrals: ReferralWorld,
) -> None:
    """A parameter a write would drop is a 400 on every write path, as on a create; nothing
    is written. `_format` and `_pretty` are taken everywhere, and `$validate` takes
    `profile` naming the type's own profile."""
    stack = referrals.stack
    child = await referrals.child(care_order=True)
    created = await stack.call("POST", "Practitioner", {"resourceType": "Practitioner"})
    assert created.status == 201, created.body
    practitioner = created.json()
    path = f"Practitioner/{practitioner['id']}"
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [{
        "request": {"method": "POST", "url": "Practitioner"},
        "resource": {"resourceType": "Practitioner"}}]}  # fmt: skip
    end = care_order("end")
    writes: list[tuple[str, str, Any, str | None]] = [
        ("POST", "Practitioner", {"resourceType": "Practitioner"}, None),
        ("PUT", path, {**practitioner, "gender": "male"}, None),
        ("DELETE", path, None, None),
        ("POST", "", bundle, None),
        ("POST", "", {**bundle, "type": "transaction"}, None),
        ("POST", "Practitioner/$validate", {"resourceType": "Practitioner"}, None),
        ("POST", f"Patient/{child.id}/$care-order", end, BVT),
    ]
    for method, target, body, by in writes:
        token = referrals.token(by) if by else None
        reply = await stack.call(method, f"{target}?foo=1&_pretty=true", body, token=token)
        assert reply.status == 400, (method, target, reply.body)
        [issue] = reply.issues()
        assert issue["code"] == "not-supported", issue
        assert "takes no query parameters (got foo)" in issue["diagnostics"], issue
    patched = await stack.call(
        "PATCH", f"{path}?foo=1", raw=b"[]", headers={"Content-Type": "application/json-patch+json"}
    )
    assert patched.status == 400, patched.body
    assert "takes no query parameters (got foo)" in patched.issues()[0]["diagnostics"]
    assert (await stack.call("GET", path)).json()["meta"]["versionId"] == "1"
    seen = (await referrals.fhir("GET", f"Patient/{child.id}", by=BVT)).json()
    assert seen["meta"]["versionId"] == "1", "the care order was not ended"

    own_profile = "https://fhir.barnebro.no/StructureDefinition/barnebro-Practitioner"
    checked = await stack.call(
        "POST", f"Practitioner/$validate?profile={own_profile}", {"resourceType": "Practitioner"}
    )
    assert checked.status == 200, checked.body
    assert "Validation successful" in checked.issues()[0]["diagnostics"]
    other = await stack.call(
        "POST", "Practitioner/$validate?profile=http://x", {"resourceType": "Practitioner"}
    )
    assert other.status == 400, other.body
    assert other.issues()[0]["expression"] == ["profile"]
    pretty = await stack.call("PUT", f"{path}?_format=json&_pretty=true", practitioner)
    assert pretty.status == 200, pretty.body


async def test_a_coordinator_of_a_hidden_team_answers_as_for_a_missing_one(
    careplans: CarePlanWorld,
) -> None:
    referrals = careplans.world
    child = await referrals.child()
    await careplans.start_care(child, KOMMUNE)
    team = {"resourceType": "CareTeam", "status": "active",
            "subject": {"identifier": {"system": FNR_SYSTEM, "value": child.fnr}}}  # fmt: skip
    hidden = (await careplans.created(team, KOMMUNE)).split("/")[1]
    assign = {"resourceType": "Parameters", "parameter": [
        {"name": "coordinator", "valueReference": {"identifier": {"system": ORGNR_SYSTEM,
                                                                   "value": BUP}}},
        {"name": "reason", "valueString": "Overtar"}]}  # fmt: skip
    path = "CareTeam/{}/$assign-coordinator"
    seen = await referrals.fhir("POST", path.format(hidden), assign, by=BUP)
    missing = await referrals.fhir("POST", path.format(MISSING), assign, by=BUP)
    assert seen.status == 404, seen.body
    assert_as_missing(seen, hidden, missing)
