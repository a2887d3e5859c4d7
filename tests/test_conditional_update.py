"""Conditional update, `PUT /fhir/{type}?identifier=system|value`, over HTTP on both
databases: no match creates, one match is updated (If-Match honoured), several are a 412,
and only what the caller may see matches: a hidden resource is neither updated nor
revealed (the request is answered as if it were not there), and concurrent conditional
updates create once."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from multidict import CIMultiDict
from yarl import URL

from shared.identifiers import FNR_SYSTEM
from tests.referral_world import BUP, BUP2, GP, ReferralWorld, attachment
from tests.support import Reply, diagnostics

SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.9999"


def practitioner(value: str, family: str) -> dict[str, Any]:
    return {
        "resourceType": "Practitioner",
        "identifier": [{"system": SYSTEM, "value": value}],
        "name": [{"family": family}],
    }


async def test_no_match_creates_one_match_updates_several_refuse(
    referrals: ReferralWorld,
) -> None:
    url = f"Practitioner?identifier={SYSTEM}|hpr-1"
    created = await referrals.fhir("PUT", url, practitioner("hpr-1", "Berg"), by=BUP)
    assert created.status == 201, created.body
    res_id = created.json()["id"]
    assert created.headers["ETag"] == 'W/"1"'
    updated = await referrals.fhir("PUT", url, practitioner("hpr-1", "Dal"), by=BUP)
    assert updated.status == 200, updated.body
    assert updated.json()["id"] == res_id and updated.json()["name"][0]["family"] == "Dal"
    assert updated.headers["ETag"] == 'W/"2"'

    stale = await referrals.fhir(
        "PUT", url, practitioner("hpr-1", "Eng"), by=BUP, headers={"If-Match": 'W/"1"'}
    )
    assert stale.status == 412, stale.body
    current = await referrals.fhir(
        "PUT", url, practitioner("hpr-1", "Eng"), by=BUP, headers={"If-Match": 'W/"2"'}
    )
    assert current.status == 200 and current.json()["id"] == res_id, current.body
    wrong_id = {**practitioner("hpr-1", "Fjell"), "id": "another-id"}
    assert (await referrals.fhir("PUT", url, wrong_id, by=BUP)).status == 400
    nothing = f"Practitioner?identifier={SYSTEM}|hpr-none"
    with_if_match = await referrals.fhir(
        "PUT", nothing, practitioner("hpr-none", "Li"), by=BUP, headers={"If-Match": 'W/"1"'}
    )
    assert with_if_match.status == 412, with_if_match.body
    with_id = {**practitioner("hpr-none", "Li"), "id": "chosen-id"}
    assert (await referrals.fhir("PUT", nothing, with_id, by=BUP)).status == 400

    second = await referrals.fhir("POST", "Practitioner", practitioner("hpr-1", "To"), by=BUP)
    assert second.status == 201, second.body
    several = await referrals.fhir("PUT", url, practitioner("hpr-1", "Tre"), by=BUP)
    assert several.status == 412, several.body
    assert "more than one" in diagnostics(several)

    for bad in ("Practitioner", "Practitioner?_format=json", "Practitioner?nosuch=1"):
        refused = await referrals.fhir("PUT", bad, practitioner("hpr-1", "X"), by=BUP)
        assert refused.status == 400, (bad, refused.body)
    found = await referrals.fhir("GET", f"Practitioner/{res_id}", by=BUP)
    assert found.json()["name"][0]["family"] == "Eng"
    assert found.json()["meta"]["versionId"] == "3"


async def test_a_type_no_client_creates_is_updated_but_not_created(
    referrals: ReferralWorld,
) -> None:
    child = await referrals.child()
    referral = await referrals.submit(child)
    task, etag = await referrals.task(referral)
    by_id = f"Task?_id={referral.task_id}"
    moved = await referrals.fhir(
        "PUT", by_id, {**task, "status": "received"}, by=BUP, headers={"If-Match": etag}
    )
    assert moved.status == 200, moved.body
    assert moved.json()["id"] == referral.task_id
    missing = {k: v for k, v in task.items() if k != "id"}
    refused = await referrals.fhir("PUT", "Task?_id=no-such-task", missing, by=BUP)
    assert refused.status == 405, refused.body


async def test_a_hidden_match_is_neither_updated_nor_revealed(referrals: ReferralWorld) -> None:
    """Another BUP cannot see the fastlege's attachment: its conditional update on the
    attachment's identifier finds nothing and creates its own, exactly as for an
    identifier no one holds; the fastlege's attachment is untouched."""
    child = await referrals.child()

    def with_identifier(value: str, text: str) -> dict[str, Any]:
        resource = attachment(child, "somatisk-vurdering", text)
        return {**resource, "identifier": [{"system": SYSTEM, "value": value}]}

    hidden = await referrals.fhir(
        "POST", "DocumentReference", with_identifier("n-1", "Fastlegen"), by=GP
    )
    assert hidden.status == 201, hidden.body
    hidden_id = hidden.json()["id"]
    assert (await referrals.fhir("GET", f"DocumentReference/{hidden_id}", by=BUP2)).status == 404
    answers = []
    for value in ("n-1", "n-unused"):
        reply = await referrals.fhir(
            "PUT",
            f"DocumentReference?identifier={SYSTEM}|{value}",
            with_identifier(value, "BUP"),
            by=BUP2,
        )
        assert reply.status == 201, reply.body
        assert reply.json()["id"] != hidden_id
        answers.append((reply.status, sorted(reply.headers.keys())))
    assert answers[0] == answers[1]
    kept = await referrals.fhir("GET", f"DocumentReference/{hidden_id}", by=GP)
    assert kept.json()["meta"]["versionId"] == "1"
    assert kept.json()["description"] == hidden.json()["description"]


async def test_a_hidden_holder_of_a_unique_key_answers_as_a_plain_create(
    referrals: ReferralWorld,
) -> None:
    """A child another BUP has no relation to is no match for it; creating the child again
    collides on the fødselsnummer with the answer a plain create gets, naming no one."""
    child = await referrals.child()
    patient = {
        "resourceType": "Patient",
        "identifier": [child.identifier],
        "name": [{"family": "Annen"}],
    }
    conditional = await referrals.fhir(
        "PUT", f"Patient?identifier={FNR_SYSTEM}|{child.fnr}", patient, by=BUP2
    )
    plain = await referrals.fhir("POST", "Patient", patient, by=BUP2)
    assert conditional.status == plain.status == 409, conditional.body
    assert conditional.body == plain.body
    assert child.id not in conditional.body.decode()
    stored = await referrals.stack.call("GET", f"Patient/{child.id}", token=referrals.token(BUP))
    assert stored.status in (200, 404)
    if stored.status == 200:
        assert stored.json()["name"][0]["family"] == "Nordmann"


async def test_concurrent_conditional_updates_create_once(referrals: ReferralWorld) -> None:
    url = f"Practitioner?identifier={SYSTEM}|hpr-race"
    replies = await asyncio.gather(
        *(
            referrals.fhir("PUT", url, practitioner("hpr-race", f"Navn{n}"), by=BUP)
            for n in range(5)
        )
    )
    statuses = sorted(reply.status for reply in replies)
    assert statuses == [200, 200, 200, 200, 201], [r.body for r in replies]
    assert len({reply.json()["id"] for reply in replies}) == 1
    found = await referrals.fhir("GET", url, by=BUP)
    assert len(found.json()["entry"]) == 1


async def test_the_capability_statement_offers_conditional_update(
    referrals: ReferralWorld,
) -> None:
    statement = (await referrals.stack.call("GET", "metadata")).json()
    by_type = {r["type"]: r for r in statement["rest"][0]["resource"]}
    for resource_type in ("Practitioner", "Patient", "Task", "DocumentReference"):
        assert by_type[resource_type]["conditionalUpdate"] is True, resource_type
    assert by_type["Consent"].get("conditionalUpdate") is False


async def test_conditional_update_in_a_batch_and_a_transaction(referrals: ReferralWorld) -> None:
    def entry(value: str, family: str) -> dict[str, Any]:
        return {
            "resource": practitioner(value, family),
            "request": {"method": "PUT", "url": f"Practitioner?identifier={SYSTEM}|{value}"},
        }

    first = {"resourceType": "Bundle", "type": "transaction",
             "entry": [entry("hpr-tx", "Ny"), entry("hpr-tx2", "Annen")]}  # fmt: skip
    reply = await referrals.fhir("POST", "", first, by=BUP)
    assert reply.status == 200, reply.body
    statuses = [e["response"]["status"] for e in reply.json()["entry"]]
    assert statuses == ["201", "201"], reply.body
    created = reply.json()["entry"][0]["resource"]["id"]
    again = {"resourceType": "Bundle", "type": "batch", "entry": [entry("hpr-tx", "Endret")]}
    reply = await referrals.fhir("POST", "", again, by=BUP)
    assert reply.status == 200, reply.body
    answer = reply.json()["entry"][0]
    assert answer["response"]["status"] == "200", reply.body
    assert answer["resource"]["id"] == created
    assert answer["resource"]["name"][0]["family"] == "Endret"
    bare = {"resourceType": "Bundle", "type": "transaction",
            "entry": [{"resource": practitioner("x", "Y"),
                       "request": {"method": "PUT", "url": "Practitioner"}}]}  # fmt: skip
    refused = await referrals.fhir("POST", "", bare, by=BUP)
    assert refused.status == 400, refused.body


async def test_criteria_that_are_no_query_string_are_refused_as_if_none_exist_is(
    referrals: ReferralWorld,
) -> None:
    """`%ZZ` is not what the client meant: a conditional update refuses it exactly as a
    conditional create does (400), in the URL and in a Bundle entry, and creates nothing."""
    stack = referrals.stack
    token = referrals.token(BUP)
    body = practitioner("%ZZ", "Prosent")
    by_header = await stack.call(
        "POST", "Practitioner", body, token=token, headers={"If-None-Exist": "identifier=%ZZ"}
    )
    assert by_header.status == 400, by_header.body
    assert diagnostics(by_header) == (
        "If-None-Exist is not a query string: a % begins two hex digits"
    )
    for query in ("identifier=%ZZ", f"identifier={SYSTEM}|%", "identifier=Half%4"):
        # As sent on the wire: a client library would escape the % itself.
        url = URL(f"{stack.base}/Practitioner?{query}", encoded=True)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
        async with stack.session.put(url, data=orjson.dumps(body), headers=headers) as resp:
            reply = Reply(resp.status, CIMultiDict(resp.headers), await resp.read())
        assert reply.status == 400, (query, reply.body)
        assert diagnostics(reply) == (
            "The conditional update's URL is not a query string: a % begins two hex digits"
        )
    entry = {"resource": body, "request": {"method": "PUT", "url": "Practitioner?identifier=%ZZ"}}
    for kind in ("batch", "transaction"):
        bundle = {"resourceType": "Bundle", "type": kind, "entry": [entry]}
        reply = await referrals.fhir("POST", "", bundle, by=BUP)
        assert reply.status == 400, reply.body
        assert "is not a query string: a % begins two hex digits" in diagnostics(reply)
    # The literal text, escaped as it should be, is matched as text: nothing was created.
    found = await referrals.fhir("GET", "Practitioner?identifier=%25ZZ&_summary=count", by=BUP)
    assert found.json()["total"] == 0, found.body
    escaped = await referrals.fhir("PUT", "Practitioner?identifier=%25ZZ", body, by=BUP)
    assert escaped.status == 201, escaped.body
