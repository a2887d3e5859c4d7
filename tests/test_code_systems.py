"""The project's code systems served as FHIR CodeSystem resources: generated from the
code's declarations, read-only, readable by every registered caller, and found by the
canonical URL that stored resources name as `system`."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from fhir.resources.R4B.codesystem import CodeSystem

from services.catalogue import PROJECT_CODE_SYSTEMS
from services.consent.domain.model import Purpose
from shared.codes import (
    CONSENT_PURPOSE_SYSTEM,
    DATA_CATEGORY_SYSTEM,
    ORGANISATION_KIND_SYSTEM,
    ROLE_SYSTEM,
    ROLES,
    DataCategory,
    OrganisationKind,
)
from shared.fhir.code_systems import code_system_resource
from tests.consent_world import BVT, SKOLE, World, sharing, signature
from tests.support import Stack

FHIR_JSON = "application/fhir+json"


def by_url() -> dict[str, dict[str, Any]]:
    return {source.url: code_system_resource(source) for source in PROJECT_CODE_SYSTEMS}


def test_every_code_system_is_a_complete_r4_code_system() -> None:
    for url, resource in by_url().items():
        CodeSystem.model_validate(resource)
        assert (resource["status"], resource["content"]) == ("active", "complete"), url
        assert resource["id"] == url.rsplit("/", 1)[1]
        assert resource["count"] == len(resource["concept"])
        for concept in resource["concept"]:
            assert concept.keys() == {"code", "display", "definition"}, (url, concept)
            assert all(concept.values()), (url, concept)


def test_the_code_systems_are_the_codes_themselves() -> None:
    served = by_url()

    def codes(url: str) -> list[str]:
        return [concept["code"] for concept in served[url]["concept"]]

    assert codes(CONSENT_PURPOSE_SYSTEM) == [p.value for p in Purpose]
    assert codes(DATA_CATEGORY_SYSTEM) == [c.value for c in DataCategory]
    assert codes(ORGANISATION_KIND_SYSTEM) == [k.value for k in OrganisationKind]
    assert set(codes(ROLE_SYSTEM)) == ROLES
    assert len({source.id for source in PROJECT_CODE_SYSTEMS}) == len(PROJECT_CODE_SYSTEMS)


async def test_each_system_is_found_by_its_canonical_url(stack: Stack) -> None:
    for url, expected in by_url().items():
        reply = await stack.call("GET", f"CodeSystem?url={quote(url, safe='')}")
        assert reply.status == 200, reply.body
        bundle = reply.json()
        assert [e["resource"]["url"] for e in bundle["entry"]] == [url]
        found = bundle["entry"][0]["resource"]
        assert found["concept"] == expected["concept"]
        read = await stack.call("GET", f"CodeSystem/{expected['id']}")
        assert read.status == 200, read.body
        assert {k: v for k, v in read.json().items() if k != "meta"} == expected
    none = await stack.call("GET", "CodeSystem?url=https://fhir.barnebro.no/CodeSystem/nothing")
    assert none.status == 200 and not none.json().get("entry"), none.body
    listed = await stack.call("GET", "CodeSystem?_count=100")
    assert {e["resource"]["url"] for e in listed.json()["entry"]} == set(by_url())


async def test_any_registered_caller_reads_them_and_no_one_writes_them(stack: Stack) -> None:
    path = f"CodeSystem/{CONSENT_PURPOSE_SYSTEM.rsplit('/', 1)[1]}"
    tokens = {
        "school": stack.token(orgnr="910000039", kind="skole"),
        "person": stack.token(orgnr="910000039", kind="skole", fhir_user="RelatedPerson/x"),
        "operator": stack.operator_token(),
        "register": stack.register_token(),
    }
    for who, token in tokens.items():
        reply = await stack.call("GET", path, token=token)
        assert reply.status == 200, (who, reply.body)
    current = (await stack.call("GET", path)).json()
    changed = {**current, "title": "Something else"}
    writes = [
        ("POST", "CodeSystem", {k: v for k, v in changed.items() if k != "id"}),
        ("PUT", path, changed),
        ("DELETE", path, None),
    ]
    for method, target, body in writes:
        for who, token in tokens.items():
            reply = await stack.call(method, target, body, token=token)
            assert reply.status == 405, (who, method, reply.body)
            assert reply.json()["resourceType"] == "OperationOutcome"
    after = (await stack.call("GET", path)).json()
    assert after == current, "nothing was written"
    unauthenticated = await stack.call("GET", path, authenticated=False)
    assert unauthenticated.status == 401


async def test_the_capability_statement_lists_them_read_only(stack: Stack) -> None:
    statement = (await stack.call("GET", "metadata", authenticated=False)).json()
    [resource] = [r for r in statement["rest"][0]["resource"] if r["type"] == "CodeSystem"]
    interactions = {i["code"] for i in resource["interaction"]}
    assert "read" in interactions and "search-type" in interactions
    assert not interactions & {"create", "update", "delete"}
    assert "url" in {p["name"] for p in resource["searchParam"]}


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_the_systems_a_stored_consent_names_resolve(world: World) -> None:
    """Every `system` of the project's own that a stored Consent carries is a CodeSystem
    the server serves, holding the code."""
    child = await world.child(17)
    created = await world.api("POST", "consents", sharing(child, signature(child.ref)))
    assert created.status == 201, created.body
    consent = (await world.fhir("GET", f"Consent/{created.json()['id']}", by=BVT)).json()
    purposes = [coding for concept in consent["category"] for coding in concept["coding"]]
    every = [*purposes, *consent["provision"]["class"]]
    codings = [coding for coding in every if coding["system"] in by_url()]
    assert {c["system"] for c in codings} >= {CONSENT_PURPOSE_SYSTEM, DATA_CATEGORY_SYSTEM}
    for coding in codings:
        url = quote(coding["system"], safe="")
        reply = await world.fhir("GET", f"CodeSystem?url={url}", by=SKOLE)
        [entry] = reply.json()["entry"]
        assert coding["code"] in {c["code"] for c in entry["resource"]["concept"]}, coding
