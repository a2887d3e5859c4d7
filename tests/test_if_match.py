"""`If-Match` as RFC 9110 has it, over HTTP on both databases, wherever it is read (PUT,
PATCH, conditional update, DELETE, a Bundle entry's `request.ifMatch`): `*` matches any
current version, a list of ETags matches when one names the current version, anything
else is a 400; a resource the caller may not see still answers exactly as a missing one,
and a referral's Task still needs an If-Match that names a version."""

from __future__ import annotations

from typing import Any

import orjson

from tests.referral_world import BUP, BUP2, ReferralWorld
from tests.support import Reply, comparable, diagnostics

SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.9999"


def practitioner(family: str, value: str = "hpr-if-match") -> dict[str, Any]:
    return {
        "resourceType": "Practitioner",
        "identifier": [{"system": SYSTEM, "value": value}],
        "name": [{"family": family}],
    }


async def put(referrals: ReferralWorld, path: str, family: str, if_match: str) -> Reply:
    body = {**practitioner(family), "id": path.split("/")[1]}
    return await referrals.fhir("PUT", path, body, by=BUP, headers={"If-Match": if_match})


async def test_a_star_and_a_list_match_on_put_patch_and_delete(referrals: ReferralWorld) -> None:
    created = await referrals.fhir("POST", "Practitioner", practitioner("Berg"), by=BUP)
    assert created.status == 201, created.body
    path = f"Practitioner/{created.json()['id']}"
    star = await put(referrals, path, "Dal", "*")
    assert star.status == 200 and star.headers["ETag"] == 'W/"2"', star.body
    listed = await put(referrals, path, "Eng", 'W/"16", W/"2"')
    assert listed.status == 200 and listed.headers["ETag"] == 'W/"3"', listed.body
    stale = await put(referrals, path, "Fjell", 'W/"16", W/"1"')
    assert stale.status == 412, stale.body
    foreign = await put(referrals, path, "Fjell", '"abc", W/"9"')
    assert foreign.status == 412, foreign.body
    for malformed in ("seven", 'W/"3",', "**", 'W/"3" W/"4"'):
        reply = await put(referrals, path, "Fjell", malformed)
        assert reply.status == 400, (malformed, reply.body)
        assert "is not * or a list of ETags" in diagnostics(reply)

    gender = [{"op": "add", "path": "/gender", "value": "female"}]
    for if_match, version in (("*", "4"), ('W/"1", "4"', "5")):
        patched = await referrals.stack.call(
            "PATCH", path, raw=orjson.dumps(gender), token=referrals.token(BUP),
            headers={"Content-Type": "application/json-patch+json", "If-Match": if_match},
        )  # fmt: skip
        assert patched.status == 200, patched.body
        assert patched.json()["meta"]["versionId"] == version

    unmatched = await referrals.fhir("DELETE", path, by=BUP, headers={"If-Match": 'W/"1"'})
    assert unmatched.status == 412, unmatched.body
    deleted = await referrals.fhir("DELETE", path, by=BUP, headers={"If-Match": 'W/"9", W/"5"'})
    assert deleted.status == 204, deleted.body
    # An update never brings a deleted resource back, whatever If-Match says (410); a
    # delete's `*` asks for a current version, and a deleted resource has none (412).
    assert (await put(referrals, path, "Gran", "*")).status == 410
    again = await referrals.fhir("DELETE", path, by=BUP, headers={"If-Match": "*"})
    assert again.status == 412, again.body


async def test_a_star_on_a_conditional_update_and_in_a_transaction(
    referrals: ReferralWorld,
) -> None:
    url = f"Practitioner?identifier={SYSTEM}|hpr-star"
    body = practitioner("Berg", "hpr-star")
    nothing = await referrals.fhir("PUT", url, body, by=BUP, headers={"If-Match": "*"})
    assert nothing.status == 412, nothing.body  # nothing matches: no current version
    malformed = await referrals.fhir("PUT", url, body, by=BUP, headers={"If-Match": "seven"})
    assert malformed.status == 400, malformed.body
    created = await referrals.fhir("PUT", url, body, by=BUP)
    assert created.status == 201, created.body
    updated = await referrals.fhir(
        "PUT", url, practitioner("Dal", "hpr-star"), by=BUP, headers={"If-Match": "*"}
    )
    assert updated.status == 200 and updated.json()["id"] == created.json()["id"], updated.body

    res_id = created.json()["id"]
    entries = [
        {"resource": {**practitioner("Eng", "hpr-star"), "id": res_id},
         "request": {"method": "PUT", "url": f"Practitioner/{res_id}", "ifMatch": "*"}},
        {"resource": practitioner("Fjell", "hpr-star2"),
         "request": {"method": "PUT", "url": f"Practitioner?identifier={SYSTEM}|hpr-star2",
                     "ifMatch": 'W/"1", W/"2"'}},
    ]  # fmt: skip
    batch = {"resourceType": "Bundle", "type": "batch", "entry": entries}
    reply = await referrals.fhir("POST", "", batch, by=BUP)
    assert reply.status == 200, reply.body
    statuses = [e["response"]["status"] for e in reply.json()["entry"]]
    assert statuses == ["200", "412"], reply.body
    listed = {**entries[0], "request": {**entries[0]["request"], "ifMatch": 'W/"7", W/"3"'}}
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [listed]}
    reply = await referrals.fhir("POST", "", transaction, by=BUP)
    assert reply.status == 200, reply.body
    assert reply.json()["entry"][0]["response"]["etag"] == 'W/"4"'


async def test_a_hidden_resource_answers_a_star_as_a_missing_one(
    referrals: ReferralWorld,
) -> None:
    child = await referrals.child()
    referral = await referrals.submit(child)
    task, _ = await referrals.task(referral)
    made_up = "0f0e0d0c-0b0a-4909-8807-060504030201"
    move = [{"op": "replace", "path": "/status", "value": "received"}]
    for if_match in ("*", 'W/"1", W/"2"'):
        answers = []
        for res_id in (referral.task_id, made_up):
            path = f"Task/{res_id}"
            headers = {"If-Match": if_match}
            by_put = await referrals.fhir(
                "PUT", path, {**task, "id": res_id}, by=BUP2, headers=headers
            )
            by_patch = await referrals.stack.call(
                "PATCH", path, raw=orjson.dumps(move), token=referrals.token(BUP2),
                headers={"Content-Type": "application/json-patch+json", **headers},
            )  # fmt: skip
            answers.append((comparable(by_put, res_id), comparable(by_patch, res_id)))
        assert answers[0] == answers[1], answers
        assert answers[0][1][0] == 404
    after, _ = await referrals.task(referral)
    assert after["status"] == "requested" and after["meta"]["versionId"] == "1"


async def test_a_task_still_needs_an_if_match_naming_its_version(
    referrals: ReferralWorld,
) -> None:
    child = await referrals.child()
    referral = await referrals.submit(child)
    task, etag = await referrals.task(referral)
    received = {**task, "status": "received"}
    path = f"Task/{referral.task_id}"
    star = await referrals.fhir("PUT", path, received, by=BUP, headers={"If-Match": "*"})
    assert star.status == 428, star.body
    listed = await referrals.fhir(
        "PUT", path, received, by=BUP, headers={"If-Match": f'W/"9", {etag}'}
    )
    assert listed.status == 200, listed.body
