"""PATCH within bounds, over HTTP on both databases: a small patch that would grow the
resource by doubling is refused before it grows (and the service goes on answering), a
patch nested deeper than a body may be is refused as a PUT body is (never a 500), and what
a patch that does not apply answers is said in our words, never in Python's."""

from __future__ import annotations

from typing import Any

import orjson

from tests.referral_world import BUP, ReferralWorld
from tests.support import Reply, diagnostics

JSON_PATCH = {"Content-Type": "application/json-patch+json"}


async def practitioner(referrals: ReferralWorld) -> str:
    body = {"resourceType": "Practitioner", "gender": "female", "name": [{"family": "Hansen"}]}
    created = await referrals.fhir("POST", "Practitioner", body, by=BUP)
    assert created.status == 201, created.body
    return f"Practitioner/{created.json()['id']}"


async def send(referrals: ReferralWorld, path: str, raw: bytes, fhirpath: bool = False) -> Reply:
    headers = {} if fhirpath else JSON_PATCH
    return await referrals.stack.call(
        "PATCH", path, raw=raw, token=referrals.token(BUP), headers=headers
    )


async def json_patch(referrals: ReferralWorld, path: str, operations: Any) -> Reply:
    return await send(referrals, path, orjson.dumps(operations))


def codes(reply: Reply) -> list[str]:
    return [i.get("code", "") for i in reply.issues()]


async def unchanged(referrals: ReferralWorld, path: str) -> None:
    """The resource is still there as created, and the service answers."""
    read = await referrals.fhir("GET", path, by=BUP)
    assert read.status == 200, read.body
    assert read.json()["meta"]["versionId"] == "1"
    assert "x" not in read.json() and "extension" not in read.json()


async def test_a_doubling_patch_is_refused_before_it_grows(referrals: ReferralWorld) -> None:
    path = await practitioner(referrals)
    doubling = [{"op": "add", "path": "/extension", "value": [1]}]
    doubling += [{"op": "copy", "from": "/extension", "path": "/extension/-"}] * 40
    reply = await json_patch(referrals, path, doubling)
    assert reply.status == 413, reply.body
    assert codes(reply) == ["too-costly"], reply.body
    assert "copies and moves" in diagnostics(reply)
    await unchanged(referrals, path)
    # The service goes on patching.
    male = [{"op": "replace", "path": "/gender", "value": "male"}]
    fine = await json_patch(referrals, path, male)
    assert fine.status == 200, fine.body
    assert fine.json()["gender"] == "male"


async def test_a_patch_nested_too_deep_is_refused_as_a_put_body_is(
    referrals: ReferralWorld,
) -> None:
    path = await practitioner(referrals)
    nested = b"[" * 500 + b"]" * 500
    by_put = await referrals.stack.call(
        "PUT", path, raw=b'{"resourceType":"Practitioner","x":' + nested + b"}",
        token=referrals.token(BUP),
    )  # fmt: skip
    deep_json = await send(referrals, path, b'[{"op":"add","path":"/x","value":' + nested + b"}]")
    value = b'{"name":"value","valueHumanName":{"family":' + nested + b"}}"
    deep_fhirpath = await send(
        referrals,
        path,
        b'{"resourceType":"Parameters","parameter":[{"name":"operation","part":['
        b'{"name":"type","valueCode":"add"},{"name":"path","valueString":"Practitioner"},'
        b'{"name":"name","valueString":"name"},' + value + b"]}]}",
        fhirpath=True,
    )
    for reply in (by_put, deep_json, deep_fhirpath):
        assert reply.status == 400, reply.body
        assert codes(reply) == ["too-costly"], reply.body
        assert diagnostics(reply) == "The body is nested deeper than 64 levels"
    # Nor may copies nest the resource deeper than a body may be.
    deepening = [{"op": "add", "path": "/x", "value": {"a": {"b": {"c": 1}}}}]
    deepening += [{"op": "copy", "from": "/x", "path": "/x/a/b/c"}] * 30
    reply = await json_patch(referrals, path, deepening)
    assert reply.status == 400, reply.body
    assert codes(reply) == ["too-costly"] and "deeper than 64 levels" in diagnostics(reply)
    nul = await json_patch(referrals, path, [{"op": "add", "path": "/gender", "value": "\0"}])
    assert nul.status == 400, nul.body
    await unchanged(referrals, path)


async def test_a_patch_that_does_not_apply_is_told_in_our_words(
    referrals: ReferralWorld,
) -> None:
    path = await practitioner(referrals)
    expected = {
        "/gender": "JSON Patch test failed at /gender: the value is not the tested one",
        "": 'JSON Patch test failed at the root (""): the value is not the tested one',
        "/nothing": "JSON Patch test failed: nothing is at /nothing",
    }
    for where, message in expected.items():
        reply = await json_patch(referrals, path, [{"op": "test", "path": where, "value": "male"}])
        assert reply.status == 422, reply.body
        assert diagnostics(reply) == f"{message} (JSON Patch operation 0 (test))"
    failing: list[tuple[str, dict[str, Any], str]] = [
        ("remove", {"path": "/nothing"}, "nothing is at /nothing"),
        ("replace", {"path": "/name/7", "value": {}}, "nothing is at /name/7"),
        ("add", {"path": "/gender/x", "value": 1}, "/gender/x is no place in the resource"),
        ("copy", {"from": "/nothing", "path": "/x"}, "nothing is at from /nothing"),
        ("copy", {"from": "/name/-", "path": "/x"}, "nothing is at from /name/-"),
        ("move", {"from": "/name", "path": "/name/0/x"}, "cannot be moved into itself"),
    ]
    for op, members, message in failing:
        reply = await json_patch(referrals, path, [{"op": op, **members}])
        assert reply.status == 422, reply.body
        assert f"JSON Patch operation 0 ({op}) does not apply: " in diagnostics(reply)
        assert message in diagnostics(reply), reply.body
    for malformed, message in (
        ([{"op": ["add"], "path": "/x", "value": 1}], 'op ["add"] is not one of'),
        ([{"op": "add", "path": "/x~2", "value": 1}], 'path "/x~2" is no JSON Pointer'),
        ([{"op": "move", "path": "/x"}], 'needs "from"'),
    ):
        reply = await json_patch(referrals, path, malformed)
        assert reply.status == 400, reply.body
        assert message in diagnostics(reply), reply.body
    await unchanged(referrals, path)
