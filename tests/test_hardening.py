"""Edge cases found in review: each was a 500, a hang, a leak or a silent mis-write."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.stack import free_port
from shared.auth.tokens import TokenVerifier
from shared.events import subject_token
from shared.fhir.errors import FhirError
from tests.support import FHIR_JSON, Stack
from tests.test_gateway_routing import claims, sign

KIND = "https://fhir.barnebro.no/CodeSystem/organisation-kind"


def of_kind(kind: str) -> dict[str, Any]:
    return {"resourceType": "Organization", "type": [{"coding": [{"system": KIND, "code": kind}]}]}


def practitioner(family: str = "Edge", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Practitioner", "name": [{"family": family}], **extra}


async def total(stack: Stack, query: str = "Practitioner?_total=accurate&_count=0") -> int:
    value: int = (await stack.call("GET", query)).json()["total"]
    return value


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_head_reads_and_never_writes(stack: Stack) -> None:
    created = (await stack.call("POST", "Practitioner", practitioner())).json()
    body = practitioner("Changed", id=created["id"])
    on_type = await stack.call("HEAD", "Practitioner", body)
    on_instance = await stack.call("HEAD", f"Practitioner/{created['id']}", body)
    assert (on_type.status, on_instance.status) == (200, 200)
    assert on_type.body == b"" and on_instance.headers["ETag"] == 'W/"1"'
    assert await total(stack) == 1
    read = (await stack.call("GET", f"Practitioner/{created['id']}")).json()
    assert read["name"] == [{"family": "Edge"}]


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_scopes_cover_included_types_restrictions_and_conditional_hits(
    stack: Stack,
) -> None:
    child = (await stack.call("POST", "Patient", {"resourceType": "Patient"})).json()
    parent = {"resourceType": "RelatedPerson", "patient": {"reference": f"Patient/{child['id']}"}}
    register = stack.register_token()  # the population register states parents
    assert (await stack.call("POST", "RelatedPerson", parent, token=register)).status == 201
    patients_only = stack.token(scope="system/Patient.rs")
    revinclude = f"Patient?_id={child['id']}&_revinclude=RelatedPerson:patient"
    assert (await stack.call("GET", revinclude, token=patients_only)).status == 403
    role_only = stack.token(scope="system/PractitionerRole.rs")
    include = "PractitionerRole?_include=PractitionerRole:practitioner"
    assert (await stack.call("GET", include, token=role_only)).status == 403
    restricted = stack.token(scope="system/Patient.rs?identifier=urn:x|1")
    assert (await stack.call("GET", "Patient", token=restricted)).status == 403

    hpr = {"system": "urn:oid:2.16.578.1.12.4.1.4.4", "value": "7654321"}
    stored = await stack.call("POST", "Practitioner", practitioner(identifier=[hpr]))
    create_only = stack.token(scope="system/Practitioner.c")
    hit = await stack.call(
        "POST",
        "Practitioner",
        practitioner(identifier=[hpr]),
        token=create_only,
        headers={"If-None-Exist": "identifier=urn:oid:2.16.578.1.12.4.1.4.4|7654321"},
    )
    assert hit.status == 200 and hit.body == b"", "no read scope: the existing body stays hidden"
    assert hit.headers["Location"] == stored.headers["Location"]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_numbers_dates_and_sizes_at_the_edges_are_4xx_or_served(stack: Stack) -> None:
    created = (await stack.call("POST", "Practitioner", practitioner())).json()
    path = f"Practitioner/{created['id']}"
    assert (await stack.call("GET", f"{path}/_history/%C2%B2")).status == 404
    assert (await stack.call("GET", f"{path}/_history/99999999999999999999")).status == 404
    assert (await stack.call("GET", "Practitioner?_count=%C2%B2")).status == 400
    assert (await stack.call("GET", "Practitioner/_history?_count=%C2%B2")).status == 400
    assert (
        await stack.call("GET", "Practitioner/_history?_cursor=99999999999999999999")
    ).status == 400
    for query in ("_lastUpdated=9999-12-31", "_lastUpdated=9999-12-31T23:59:59Z",
                  "_lastUpdated=gt0001-01-01T00:00:00%2B01:00"):  # fmt: skip
        assert (await stack.call("GET", f"Practitioner?{query}")).status == 200, query
    assert (await stack.call("GET", "Practitioner/_history?_since=9999-12-31")).status == 200
    far = await stack.call("POST", "Practitioner", practitioner(birthDate="9999-12-31"))
    assert far.status == 201
    ids = ",".join(f"id{i}" for i in range(101))
    assert (await stack.call("GET", f"Practitioner?_id={ids}")).status == 400
    nested: dict[str, Any] = {"url": "http://x", "valueString": "x"}
    for _ in range(100):
        nested = {"url": "http://x", "extension": [nested]}
    deep = await stack.call("POST", "Practitioner", practitioner(extension=[nested]))
    assert deep.status == 400 and deep.issues()[0]["code"] == "too-costly"
    assert await total(stack) == 2


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_very_long_values_are_stored_and_found(stack: Stack) -> None:
    family = "Lang" + "x" * 4000
    created = await stack.call("POST", "Practitioner", practitioner(family))
    assert created.status == 201
    found = (await stack.call("GET", f"Practitioner?family:exact={family}")).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [created.json()["id"]]
    again = await stack.call(
        "POST", "Practitioner", practitioner(family), headers={"If-None-Exist": f"family={family}"}
    )
    assert again.status == 200


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_pages_are_cut_to_fit_a_message_and_paging_continues(stack: Stack) -> None:
    div = '<div xmlns="http://www.w3.org/1999/xhtml">' + "x" * 300_000 + "</div>"
    ids = set()
    for i in range(4):
        reply = await stack.call(
            "POST",
            "Practitioner",
            practitioner(f"Big{i}", text={"status": "generated", "div": div}),
        )
        assert reply.status == 201
        ids.add(reply.json()["id"])
    page = (await stack.call("GET", "Practitioner?family=Big&_count=100")).json()
    seen = [e["resource"]["id"] for e in page["entry"]]
    assert 0 < len(seen) < 4
    while next_url := {link["relation"]: link["url"] for link in page["link"]}.get("next"):
        page = (await stack.call("GET", next_url)).json()
        seen += [e["resource"]["id"] for e in page["entry"]]
    assert sorted(seen) == sorted(ids)
    history = (await stack.call("GET", "Practitioner/_history?_count=100")).json()
    assert 0 < len(history["entry"]) < 4
    assert any(link["relation"] == "next" for link in history["link"])


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_equivalent_conditional_creates_make_one_resource(stack: Stack) -> None:
    criteria = [
        "family=Same",
        "family=same",
        "name=same",
        "family:exact=same",
        "family=Same&_count=5",
    ]
    # The caller's organisation is registered before the race, so only the creates race.
    await stack.admit("974760673", "bup")
    replies = await asyncio.gather(
        *(
            stack.call("POST", "Practitioner", practitioner("Same"), headers={"If-None-Exist": c})
            for c in criteria
        )
    )
    assert sorted(r.status for r in replies) == [200, 200, 200, 200, 201]
    assert await total(stack, "Practitioner?family=Same&_total=accurate") == 1


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_transaction_with_a_repeated_full_url_is_refused(stack: Stack) -> None:
    entry = {"fullUrl": "urn:uuid:same", "resource": practitioner(),
             "request": {"method": "POST", "url": "Practitioner"}}  # fmt: skip
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry, entry]}
    reply = await stack.call("POST", "", bundle)
    assert reply.status == 400 and "appears twice" in reply.issues()[0]["diagnostics"]
    assert await total(stack) == 0


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_transaction_writing_one_resource_twice_is_refused(stack: Stack) -> None:
    first = (await stack.call("POST", "Practitioner", practitioner("Once"))).json()
    ref = f"Practitioner/{first['id']}"

    def put(family: str, url: str = ref) -> dict[str, Any]:
        body = practitioner(family) | ({"id": first["id"]} if url == ref else {})
        return {"resource": body, "request": {"method": "PUT", "url": url}}

    delete = {"request": {"method": "DELETE", "url": ref}}
    by_criteria = put("Resolved", "Practitioner?family=Once")
    for entries in ([put("A"), put("B")], [put("A"), delete], [by_criteria, put("B")]):
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        reply = await stack.call("POST", "", bundle)
        assert reply.status == 400, entries
        assert f"{ref} is written by Bundle.entry[" in reply.issues()[0]["diagnostics"]
        read = await stack.call("GET", ref)
        assert (read.json()["name"], read.json()["meta"]["versionId"]) == (
            [{"family": "Once"}],
            "1",
        )
    other = (await stack.call("POST", "Practitioner", practitioner("Other"))).json()
    apart = [
        put("A"),
        {**put("B"), "request": {"method": "PUT", "url": f"Practitioner/{other['id']}"}},
    ]
    apart[1]["resource"]["id"] = other["id"]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": apart}
    assert (await stack.call("POST", "", bundle)).status == 200


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_tokens_with_mismatched_keys_or_odd_claims_are_401(stack: Stack) -> None:
    forged = jwt.encode(claims(), rsa_pem(), algorithm="RS256", headers={"kid": "barnebro-local-1"})
    assert (await stack.call("GET", "Patient", token=forged)).status == 401
    for odd in ({"client_id": 123}, {"scope": 5}):
        reply = await stack.call("GET", "Patient", token=sign(stack, claims(**odd)))
        assert reply.status == 401, odd
    # Nothing in an integration token states what the organisation is or that it is the
    # operator: a kind claim (odd or not) and a credential claim are never read, so they
    # neither fail the token nor grant anything; the register alone decides.
    unregistered = "974760711"
    for stated in (
        {"barnebro:org_kind": ["bup"]},
        {"barnebro:org_kind": "bup"},
        {"barnebro:credential": "operator"},
    ):
        token = sign(stack, claims(**{"barnebro:orgnr": unregistered}, **stated))
        reply = await stack.call("GET", "Patient", token=token)
        assert reply.status == 403, stated
        assert "is not registered in barnebro" in reply.issues()[0]["diagnostics"]
    school = "974760738"
    await stack.admit(school, "skole")
    for stated in ({"barnebro:org_kind": "bup"}, {"barnebro:credential": "operator"}):
        token = sign(stack, claims(**{"barnebro:orgnr": school}, **stated))
        assert (await stack.call("GET", "Patient", token=token)).status == 200, stated
        created = await stack.call("POST", "Patient", {"resourceType": "Patient"}, token=token)
        assert created.status == 403, stated  # a skole, as registered, registers no child
        created = await stack.call("POST", "Organization", of_kind("bup"), token=token)
        assert created.status == 403, stated
    operator_claims = claims(iss="barnebro-operator", **{"barnebro:credential": "operator"})
    reply = await stack.call("GET", "Patient", token=sign(stack, operator_claims))
    assert reply.status == 401, "an operator credential is signed by the operator's key"


def rsa_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


async def test_an_unreachable_jwks_is_503_not_500() -> None:
    verifier = TokenVerifier(
        issuer="x", audience="y", jwks_url=f"http://127.0.0.1:{free_port()}/jwks"
    )
    token = jwt.encode(
        {"exp": int(time.time()) + 60}, rsa_pem(), algorithm="RS256", headers={"kid": "k1"}
    )
    with pytest.raises(FhirError) as failure:
        await verifier.verify(token)
    assert failure.value.status == 503
    assert failure.value.headers["Retry-After"] == "5"


def test_subject_tokens_never_carry_separators_or_wildcards() -> None:
    assert subject_token("8b03-ab_C") == "8b03-ab_C"
    for odd in ("a b", "x.>", "*", "a.b", "", "x" * 65):
        token = subject_token(odd)
        assert token.startswith("h") and len(token) == 33
        assert not set(token) & set(". *>")


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_care_orders_and_institutions_need_sound_facts(stack: Stack) -> None:
    # A care order is recorded by the barnevernstjeneste holding it, naming itself.
    bvt_id = await stack.admit("974760681", "barnevernstjeneste")
    bvt = stack.token(orgnr="974760681", kind="barnevernstjeneste")

    def child(reference: str, start: str = "2024-01-01", end: str | None = None) -> dict[str, Any]:
        period = {"start": start, **({"end": end} if end else {})}
        return {
            "resourceType": "Patient",
            "contact": [{
                "relationship": [{"coding": [{
                    "system": "https://fhir.barnebro.no/CodeSystem/contact-relationship",
                    "code": "omsorgsovertakelse"}]}],
                "organization": {"reference": reference},
                "period": period,
            }],
        }  # fmt: skip

    foreign = await stack.call(
        "POST", "Patient", child(f"https://evil.example/fhir/Organization/{bvt_id}"), token=bvt
    )
    assert foreign.status == 422
    backwards = await stack.call(
        "POST", "Patient", child(f"Organization/{bvt_id}", end="2023-01-01"), token=bvt
    )
    assert backwards.status == 422
    assert backwards.issues()[0]["expression"] == ["Patient.contact[0].period"]
    checked = await stack.call("POST", "Patient/$validate", child("Organization/nope"), token=bvt)
    assert checked.status == 200 and checked.issues()[0]["severity"] == "error"
    created = await stack.call("POST", "Patient", child(f"Organization/{bvt_id}"), token=bvt)
    assert created.status == 201
    unplaced = await stack.call(
        "POST", "Organization", of_kind("barneverninstitusjon"), token=stack.operator_token()
    )
    assert unplaced.status == 422 and unplaced.issues()[0]["expression"] == ["Organization.address"]


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_bundle_entry_urls_are_read_strictly_and_alike(stack: Stack) -> None:
    created = (await stack.call("POST", "Practitioner", practitioner())).json()
    path = f"Practitioner/{created['id']}"
    updated = await stack.call("PUT", path, {**created, "active": True})
    assert updated.status == 200
    version_one = {"request": {"method": "GET", "url": f"{path}/_history/1"}}
    for kind in ("batch", "transaction"):
        reply = await stack.call(
            "POST", "", {"resourceType": "Bundle", "type": kind, "entry": [version_one]}
        )
        assert reply.status == 200, reply.body
        assert reply.json()["entry"][0]["resource"]["meta"]["versionId"] == "1", kind
    for bad in (
        {"request": {"method": "DELETE", "url": f"{path}/whatever/else"}},
        {"request": {"method": "POST", "url": "Practitioner?x=y"}, "resource": practitioner()},
        {"request": {"method": "PUT", "url": "Practitioner"}, "resource": practitioner()},
        {"request": {"method": "POST", "url": "Practitioner", "ifNoneExist": 5},
         "resource": practitioner()},
        {"request": {"method": "POST", "url": "Practitioner"}},
    ):  # fmt: skip
        reply = await stack.call(
            "POST", "", {"resourceType": "Bundle", "type": "transaction", "entry": [bad]}
        )
        assert reply.status == 400, (bad, reply.body)
    assert (await stack.call("GET", path)).status == 200, "nothing was deleted"


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_committed_transaction_answers_even_when_its_resources_are_large(
    stack: Stack,
) -> None:
    div = '<div xmlns="http://www.w3.org/1999/xhtml">' + "x" * 420_000 + "</div>"
    entry = {"request": {"method": "POST", "url": "Practitioner"},
             "resource": practitioner(text={"status": "generated", "div": div})}  # fmt: skip
    reply = await stack.call(
        "POST", "", {"resourceType": "Bundle", "type": "transaction", "entry": [entry, entry]}
    )
    assert reply.status == 200
    results = reply.json()["entry"]
    assert [r["response"]["status"] for r in results] == ["201", "201"]
    assert all("resource" not in r and "location" in r["response"] for r in results)
    assert await total(stack) == 2


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_formats_and_search_forms(stack: Stack) -> None:
    assert (await stack.call("GET", "Practitioner?_format=xml")).status == 406
    xml_only = await stack.call("GET", "Practitioner", headers={"Accept": "application/fhir+xml"})
    assert xml_only.status == 406
    assert (await stack.call("GET", "Practitioner?_format=json")).status == 200
    # _format overrides Accept, as a browser sends it (FHIR R4 http.html).
    html = {"Accept": "text/html,application/xhtml+xml"}
    assert (await stack.call("GET", "Practitioner?_format=json", headers=html)).status == 200
    # As the specification writes it, the + unescaped (decoded as a space).
    fhir_json = "Practitioner?_format=application/fhir+json"
    assert (await stack.call("GET", fhir_json, headers=html)).status == 200
    assert (await stack.call("GET", "Practitioner", headers=html)).status == 406
    json_only = {"Accept": FHIR_JSON}
    assert (await stack.call("GET", "Practitioner?_format=xml", headers=json_only)).status == 406
    json_body = await stack.call("POST", "Practitioner/_search", {"family": "x"})
    assert json_body.status == 415
    for i in range(3):
        await stack.call("POST", "Practitioner", practitioner(f"Form{i}"))
    form = await stack.session.post(
        f"{stack.base}/Practitioner/_search",
        data={"family": "Form1"},
        headers={"Authorization": f"Bearer {stack.token()}"},
    )
    bundle = await form.json(content_type=None)
    assert [e["resource"]["name"][0]["family"] for e in bundle["entry"]] == ["Form1"]
    first = (await stack.call("GET", "Practitioner?_count=1")).json()
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    second = (await stack.call("GET", next_url)).json()
    self_url = next(link["url"] for link in second["link"] if link["relation"] == "self")
    assert self_url == next_url, "a page's self link is the URL that fetched it"
    wrong_target = await stack.call(
        "GET", "PractitionerRole?_include=PractitionerRole:practitioner:Patient"
    )
    assert wrong_target.status == 400


async def test_broken_percent_escapes_in_if_none_exist_are_refused(stack: Stack) -> None:
    """`%ZZ` or a lone `%` is not what the client meant: a 400, not a create."""
    await stack.admit("974760673", "bup")
    for condition in ("family=%ZZ", "family=%", "family=Half%4"):
        reply = await stack.call(
            "POST", "Practitioner", practitioner("Escape"), headers={"If-None-Exist": condition}
        )
        assert reply.status == 400, (condition, reply.status, reply.body)
        assert b"If-None-Exist" in reply.body
    kept = await stack.call(
        "POST", "Practitioner", practitioner("Escape"), headers={"If-None-Exist": "family=Esc%61pe"}
    )
    assert kept.status == 201, kept.body


async def test_a_value_of_the_wrong_json_type_is_a_422_not_a_500(stack: Stack) -> None:
    """The model's own validators assume a url is text: a number or a boolean there is
    the client's error."""
    await stack.admit("974760673", "bup")
    values: tuple[object, ...] = (5, True, 5.5, [], {})
    for value in values:
        body = {**practitioner("Typed"), "photo": [{"url": value}]}
        reply = await stack.call("POST", "Practitioner", body)
        assert reply.status == 422, (value, reply.status, reply.body)
        assert b"Internal" not in reply.body and b"unhashable" not in reply.body
