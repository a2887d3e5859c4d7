"""PATCH with a JSON Patch (RFC 6902) over HTTP: it moves a referral's Task along its
state machine under exactly the rules, preconditions and access of a PUT, a resource the
caller may not see answers as a missing one, and concurrent patches lose nothing."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Any

import orjson

from tests.referral_world import BUP, BUP2, ReferralWorld, frist
from tests.support import Reply, Stack, comparable, diagnostics

JSON_PATCH = {"Content-Type": "application/json-patch+json"}


async def patch(
    referrals: ReferralWorld,
    path: str,
    operations: Any,
    *,
    by: str = BUP,
    headers: dict[str, str] | None = None,
) -> Reply:
    stack: Stack = referrals.stack
    return await stack.call(
        "PATCH",
        path,
        raw=orjson.dumps(operations),
        token=referrals.token(by),
        headers={**JSON_PATCH, **(headers or {})},
    )


async def test_a_patch_moves_a_task_along_its_state_machine(referrals: ReferralWorld) -> None:
    child = await referrals.child()
    referral = await referrals.submit(child)
    path = f"Task/{referral.task_id}"
    _, etag = await referrals.task(referral)
    reply = await patch(
        referrals,
        path,
        [{"op": "test", "path": "/status", "value": "requested"},
         {"op": "replace", "path": "/status", "value": "received"}],
        headers={"If-Match": etag},
    )  # fmt: skip
    assert reply.status == 200, reply.body
    task = reply.json()
    assert task["status"] == "received"
    # The server-kept step follows the status, as it does for a PUT without it.
    assert task["businessStatus"]["coding"][0]["code"] == "mottatt", task
    assert reply.headers["ETag"] != etag
    fetched, _ = await referrals.task(referral)
    assert fetched["status"] == "received"
    accepted = await patch(
        referrals,
        path,
        [{"op": "replace", "path": "/status", "value": "accepted"},
         {"op": "add", "path": "/extension/-",
          "value": frist(date.today() + timedelta(days=30))}],
        headers={"If-Match": reply.headers["ETag"]},
    )  # fmt: skip
    assert accepted.status == 200, accepted.body
    assert accepted.json()["status"] == "accepted"


async def test_a_patch_making_an_illegal_transition_is_refused_as_a_put(
    referrals: ReferralWorld,
) -> None:
    child = await referrals.child()
    referral = await referrals.submit(child)
    path = f"Task/{referral.task_id}"
    before, etag = await referrals.task(referral)
    # requested → accepted skips receipt and has no frist: the PUT's refusal.
    put = dict(before, status="accepted")
    if_match = {"If-Match": etag}
    by_put = await referrals.fhir("PUT", path, put, by=BUP, headers=if_match)
    accept = [{"op": "replace", "path": "/status", "value": "accepted"}]
    by_patch = await patch(referrals, path, accept, headers=if_match)
    assert by_patch.status == by_put.status, (by_patch.body, by_put.body)
    assert by_patch.status in (409, 422), by_patch.body
    assert diagnostics(by_patch) == diagnostics(by_put)
    after, _ = await referrals.task(referral)
    assert after["meta"]["versionId"] == before["meta"]["versionId"]


async def test_if_match_and_a_failed_test_and_bad_patches(referrals: ReferralWorld) -> None:
    child = await referrals.child()
    referral = await referrals.submit(child)
    path = f"Task/{referral.task_id}"
    move = [{"op": "replace", "path": "/status", "value": "received"}]
    stale = await patch(referrals, path, move, headers={"If-Match": 'W/"999"'})
    assert stale.status == 412, stale.body
    failed = await patch(referrals, path, [{"op": "test", "path": "/status", "value": "draft"}])
    assert failed.status == 422, failed.body
    assert "test failed" in diagnostics(failed)
    missing_path = await patch(referrals, path, [{"op": "remove", "path": "/nothing/here"}])
    assert missing_path.status == 422, missing_path.body
    for malformed in (
        {"op": "replace"},
        [],
        [{"op": "frobnicate", "path": "/status"}],
        [{"op": "replace", "path": "/status"}],
        [{"op": "replace", "path": "status", "value": "received"}],
        [{"op": "move", "path": "/status"}],
    ):
        reply = await patch(referrals, path, malformed)
        assert reply.status == 400, (malformed, reply.body)
    not_json = await referrals.stack.call(
        "PATCH", path, raw=b"[{", token=referrals.token(BUP), headers=JSON_PATCH
    )
    assert not_json.status == 400, not_json.body
    for server_kept in (
        [{"op": "replace", "path": "/id", "value": "other"}],
        [{"op": "remove", "path": "/id"}],
        [{"op": "replace", "path": "/resourceType", "value": "Patient"}],
        [{"op": "replace", "path": "/meta/versionId", "value": "7"}],
    ):
        reply = await patch(referrals, path, server_kept)
        assert reply.status == 400, (server_kept, reply.body)
        assert "the server keeps it" in diagnostics(reply), reply.body
    fhirpath = await referrals.stack.call(
        "PATCH",
        path,
        {"resourceType": "Parameters", "parameter": []},
        token=referrals.token(BUP),
    )
    assert fhirpath.status == 400, fhirpath.body
    assert "at least one operation" in diagnostics(fhirpath)
    other_type = await referrals.stack.call(
        "PATCH", path, raw=b"x", token=referrals.token(BUP), headers={"Content-Type": "text/plain"}
    )
    assert other_type.status == 415, other_type.body
    after, _ = await referrals.task(referral)
    assert after["status"] == "requested"
    assert after["meta"]["versionId"] == "1"


async def test_a_patch_of_a_hidden_resource_answers_as_a_missing_one(
    referrals: ReferralWorld,
) -> None:
    child = await referrals.child()
    referral = await referrals.submit(child)
    path = f"Task/{referral.task_id}"
    move = [{"op": "replace", "path": "/status", "value": "received"}]
    # Another BUP has no basis for the referral: its patch answers as for an id never used.
    made_up = "0f0e0d0c-0b0a-4909-8807-060504030201"
    hidden = await patch(referrals, path, move, by=BUP2)
    missing = await patch(referrals, f"Task/{made_up}", move, by=BUP2)
    assert hidden.status == 404, hidden.body
    assert comparable(hidden, referral.task_id) == comparable(missing, made_up)
    # Even a patch whose test would fail, or with If-Match, does not tell them apart.
    probe = [{"op": "test", "path": "/status", "value": "requested"}]
    for headers in ({}, {"If-Match": 'W/"1"'}):
        one = await patch(referrals, path, probe, by=BUP2, headers=headers)
        other = await patch(referrals, f"Task/{made_up}", probe, by=BUP2, headers=headers)
        assert comparable(one, referral.task_id) == comparable(other, made_up)
    after, _ = await referrals.task(referral)
    assert after["status"] == "requested"


async def test_concurrent_patches_lose_no_update(referrals: ReferralWorld) -> None:
    """Patches without If-Match (a Practitioner needs none) each apply to the version the
    one before wrote: the row is locked from the read to the write."""
    practitioner = {"resourceType": "Practitioner", "name": [{"family": "Hansen"}]}
    created = await referrals.fhir("POST", "Practitioner", practitioner, by=BUP)
    assert created.status == 201, created.body
    path = f"Practitioner/{created.json()['id']}"
    families = [f"Familie{n}" for n in range(6)]
    replies = await asyncio.gather(
        *(patch(referrals, path, [{"op": "add", "path": "/name/-", "value": {"family": family}}])
          for family in families)
    )  # fmt: skip
    assert [reply.status for reply in replies] == [200] * len(families), [r.body for r in replies]
    after = (await referrals.fhir("GET", path, by=BUP)).json()
    assert sorted(n["family"] for n in after["name"]) == sorted(["Hansen", *families])
    assert after["meta"]["versionId"] == str(1 + len(families))


async def test_the_capability_statement_offers_patch(referrals: ReferralWorld) -> None:
    statement = (await referrals.stack.call("GET", "metadata")).json()
    by_type = {r["type"]: r for r in statement["rest"][0]["resource"]}
    for resource_type in ("Task", "ServiceRequest", "Patient", "Practitioner"):
        codes = {i["code"] for i in by_type[resource_type]["interaction"]}
        assert {"update", "patch"} <= codes, (resource_type, codes)
    assert "patch" not in {i["code"] for i in by_type["Consent"]["interaction"]}
    assert statement["patchFormat"] == ["application/json-patch+json", "application/fhir+json"]


async def test_a_patch_in_a_bundle_is_refused_clearly(referrals: ReferralWorld) -> None:
    child = await referrals.child()
    referral = await referrals.submit(child)
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "PATCH", "url": f"Task/{referral.task_id}"}}],
    }
    reply = await referrals.fhir("POST", "", bundle, by=BUP)
    assert reply.status == 400, reply.body
    assert "PATCH is not supported in a batch or transaction" in diagnostics(reply)


def operation(kind: str, path: str, **parts: Any) -> dict[str, Any]:
    """One FHIRPath Patch operation; `parts` as name → (value[x] key, value)."""
    part = [{"name": "type", "valueCode": kind}, {"name": "path", "valueString": path}]
    part += [{"name": name, key: value} for name, (key, value) in parts.items()]
    return {"name": "operation", "part": part}


async def fhirpath_patch(
    referrals: ReferralWorld, path: str, *operations: dict[str, Any], **more: Any
) -> Reply:
    body = {"resourceType": "Parameters", "parameter": list(operations)}
    return await referrals.stack.call("PATCH", path, body, token=referrals.token(BUP), **more)


async def test_a_fhirpath_patch_on_plain_element_paths(referrals: ReferralWorld) -> None:
    practitioner = {"resourceType": "Practitioner", "name": [{"family": "Hansen"}]}
    created = await referrals.fhir("POST", "Practitioner", practitioner, by=BUP)
    assert created.status == 201, created.body
    path = f"Practitioner/{created.json()['id']}"
    reply = await fhirpath_patch(
        referrals,
        path,
        operation("add", "Practitioner", name=("valueString", "name"),
                  value=("valueHumanName", {"family": "Berg"})),
        operation("add", "Practitioner", name=("valueString", "gender"),
                  value=("valueCode", "female")),
        operation("add", "Practitioner.name[0]", name=("valueString", "given"),
                  value=("valueString", "Kari")),
        operation("insert", "Practitioner.name", index=("valueInteger", 0),
                  value=("valueHumanName", {"family": "Dal"})),
        operation("replace", "Practitioner.name[1].family", value=("valueString", "Hansen-Li")),
        operation("move", "Practitioner.name", source=("valueInteger", 2),
                  destination=("valueInteger", 0)),
        operation("delete", "Practitioner.birthDate"),
    )  # fmt: skip
    assert reply.status == 200, reply.body
    stored = reply.json()
    assert stored["gender"] == "female"
    assert [n["family"] for n in stored["name"]] == ["Berg", "Dal", "Hansen-Li"]
    assert stored["name"][2]["given"] == ["Kari"]
    deleted = await fhirpath_patch(referrals, path, operation("delete", "Practitioner.gender"))
    assert deleted.status == 200 and "gender" not in deleted.json(), deleted.body

    for refused in (
        operation("replace", "Practitioner.name.where(family='Dal').family",
                  value=("valueString", "X")),
        operation("replace", "Patient.gender", value=("valueCode", "male")),
        operation("replace", "Practitioner.nosuch", value=("valueString", "x")),
        operation("insert", "Practitioner.gender", index=("valueInteger", 0),
                  value=("valueCode", "male")),
        operation("add", "Practitioner", name=("valueString", "qualification"),
                  value=("part", [])),
        operation("frobnicate", "Practitioner.gender"),
        {"name": "operation", "part": [{"name": "type", "valueCode": "replace"}]},
    ):  # fmt: skip
        answer = await fhirpath_patch(referrals, path, refused)
        assert answer.status == 400, (refused, answer.body)
    missing = await fhirpath_patch(
        referrals, path, operation("replace", "Practitioner.name[7].family",
                                   value=("valueString", "X"))
    )  # fmt: skip
    assert missing.status == 422, missing.body
    stale = await fhirpath_patch(
        referrals, path, operation("replace", "Practitioner.gender", value=("valueCode", "male")),
        headers={"If-Match": 'W/"1"'},
    )  # fmt: skip
    assert stale.status == 412, stale.body


async def test_a_fhirpath_patch_moves_a_task(referrals: ReferralWorld) -> None:
    child = await referrals.child()
    referral = await referrals.submit(child)
    _, etag = await referrals.task(referral)
    reply = await fhirpath_patch(
        referrals,
        f"Task/{referral.task_id}",
        operation("replace", "Task.status", value=("valueCode", "received")),
        headers={"If-Match": etag},
    )
    assert reply.status == 200, reply.body
    assert reply.json()["businessStatus"]["coding"][0]["code"] == "mottatt"
