"""The directory through HTTP: the gateway at /fhir, real NATS (JetStream) and both database
backends (the `stack` fixture is parametrised over SQLite and PostgreSQL).

Covers identifier validation and derived birth dates, business-key uniqueness, organisation
kinds and municipalities, parental responsibility, care orders, _include/_revinclude, the
domain events on the JetStream stream and `$validate` (DOMAIN.md §2, §3, §8).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import date, timedelta
from typing import Any
from urllib.parse import quote

import nats
import pytest
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext

from shared.clock import today
from shared.events import DomainEvent
from tests.permission_world import orgnr
from tests.support import Reply, Stack, holder_number

Json = dict[str, Any]

FNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.1"
DNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.2"
HPR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.4"
ORGNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.101"
KOMMUNENUMMER_SYSTEM = (
    "https://register.geonorge.no/subregister/sosi-kodelister/kartverket/kommunenummer-alle"
)
MUNICIPALITY_EXTENSION = "http://hl7.no/fhir/StructureDefinition/no-basis-municipalitycode"
KIND_SYSTEM = "https://fhir.barnebro.no/CodeSystem/organisation-kind"
CONTACT_RELATIONSHIP_SYSTEM = "https://fhir.barnebro.no/CodeSystem/contact-relationship"
PARENTAL_RESPONSIBILITY_SYSTEM = "http://hl7.no/fhir/CodeSystem/no-basis-parental-responsibility"
ROLE_SYSTEM = "https://fhir.barnebro.no/CodeSystem/care-role"

FNR = "21030550231"  # born 2005-03-21
FNR_2 = "12050050295"  # born 2000-05-12
FNR_ADULT = "15076500565"  # born 1965-07-15
INVALID_FNR = "13057444850"
DNR = "70019950032"
SYNTHETIC = "10915596784"  # born 1955-11-10
ORGNR_BVT = "974760681"
ORGNR_INSTITUTION = "974760703"
ORGNR_BUP = "974760711"
ORGNR_GP = "974760738"
ORGNR_BAD = "974760674"


# --- resource builders ---------------------------------------------------------------------


def patient(
    value: str | None = FNR,
    *,
    system: str = FNR_SYSTEM,
    birth_date: str | None = None,
    family: str = "Nordmann",
    contact: list[Json] | None = None,
) -> Json:
    resource: Json = {
        "resourceType": "Patient",
        "name": [{"family": family, "given": ["Kari"]}],
    }
    if value is not None:
        resource["identifier"] = [{"system": system, "value": value}]
    if birth_date is not None:
        resource["birthDate"] = birth_date
    if contact is not None:
        resource["contact"] = contact
    return resource


def organization(
    orgnr: str | None,
    kind: str | None,
    name: str,
    *,
    kommunenummer: str | None = None,
    alias: list[str] | None = None,
) -> Json:
    resource: Json = {"resourceType": "Organization", "name": name}
    if orgnr is not None:
        resource["identifier"] = [{"system": ORGNR_SYSTEM, "value": orgnr}]
    if kind is not None:
        resource["type"] = [{"coding": [{"system": KIND_SYSTEM, "code": kind}]}]
    if kommunenummer is not None:
        resource["address"] = [
            {
                "city": "Oslo",
                "extension": [
                    {
                        "url": MUNICIPALITY_EXTENSION,
                        "valueCoding": {"system": KOMMUNENUMMER_SYSTEM, "code": kommunenummer},
                    }
                ],
            }
        ]
    if alias is not None:
        resource["alias"] = alias
    return resource


def care_order(organization_id: str, start: str | None, end: str | None = None) -> Json:
    period: Json = {}
    if start is not None:
        period["start"] = start
    if end is not None:
        period["end"] = end
    contact: Json = {
        "relationship": [
            {"coding": [{"system": CONTACT_RELATIONSHIP_SYSTEM, "code": "omsorgsovertakelse"}]}
        ],
        "organization": {"reference": f"Organization/{organization_id}"},
    }
    if period:
        contact["period"] = period
    return contact


def related_person(patient_id: str, code: str = "felles") -> Json:
    return {
        "resourceType": "RelatedPerson",
        "identifier": [{"system": FNR_SYSTEM, "value": holder_number(patient_id, code)}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "relationship": [{"coding": [{"system": PARENTAL_RESPONSIBILITY_SYSTEM, "code": code}]}],
        "name": [{"family": "Nordmann", "given": ["Ola"]}],
    }


# --- HTTP helpers --------------------------------------------------------------------------


DEFAULT_ORGNR = "974760673"  # the `stack` fixture's default token, registered as bup


def writer(stack: Stack, resource_type: str) -> str:
    """The credential that writes a type: the operator registers organisations, the
    population register states parental responsibility, the default token the rest."""
    if resource_type == "Organization":
        return stack.operator_token()
    if resource_type == "RelatedPerson":
        return stack.register_token()
    return stack.token()


def barnevernstjeneste(stack: Stack, orgnr: str = ORGNR_BVT) -> str:
    """A token of a barnevernstjeneste (registered as one before its first request,
    unless the operator registered the organisation already)."""
    return stack.token(orgnr=orgnr, kind="barnevernstjeneste")


async def create(stack: Stack, resource: Json, *, token: str | None = None) -> Json:
    reply = await stack.call(
        "POST",
        resource["resourceType"],
        resource,
        token=token or writer(stack, resource["resourceType"]),
    )
    assert reply.status == 201, reply.body
    created: Json = reply.json()
    assert created["meta"]["versionId"] == "1"
    return created


async def read(stack: Stack, resource_type: str, res_id: str, *, token: str | None = None) -> Json:
    reply = await stack.call("GET", f"{resource_type}/{res_id}", token=token)
    assert reply.status == 200, reply.body
    body: Json = reply.json()
    return body


async def search(stack: Stack, query: str, *, token: str | None = None) -> Json:
    reply = await stack.call("GET", query, token=token)
    assert reply.status == 200, reply.body
    bundle: Json = reply.json()
    assert (bundle["resourceType"], bundle["type"]) == ("Bundle", "searchset")
    return bundle


def entries(bundle: Json, mode: str) -> list[tuple[str, str]]:
    return sorted(
        (e["resource"]["resourceType"], e["resource"]["id"])
        for e in bundle.get("entry", [])
        if e["search"]["mode"] == mode
    )


async def matches(stack: Stack, query: str, *, token: str | None = None) -> list[str]:
    """Ids of the matches of a search (the Bundle must hold nothing else)."""
    bundle = await search(stack, query, token=token)
    assert all(e["search"]["mode"] == "match" for e in bundle.get("entry", [])), bundle
    return sorted(e["resource"]["id"] for e in bundle.get("entry", []))


def only_issue(reply: Reply) -> dict[str, Any]:
    issues = reply.issues()
    assert len(issues) == 1, issues
    return issues[0]


def assert_outcome(
    reply: Reply, status: int, code: str, expressions: list[str] | None
) -> dict[str, Any]:
    """The reply is `status` with a single error issue of `code` at `expressions`."""
    assert reply.status == status, reply.body
    issue = only_issue(reply)
    assert (issue["severity"], issue["code"]) == ("error", code), issue
    assert issue.get("expression") == expressions, issue
    return issue


def q(value: str) -> str:
    return quote(value, safe="")


# --- identifiers and birth dates -----------------------------------------------------------


async def test_invalid_fnr_is_rejected_with_expression(stack: Stack) -> None:
    body = patient(INVALID_FNR)
    body["identifier"].insert(0, {"system": "urn:example:journal", "value": "J-1"})
    reply = await stack.call("POST", "Patient", body)
    issue = assert_outcome(reply, 422, "value", ["Patient.identifier[1].value"])
    assert INVALID_FNR in issue["diagnostics"]
    assert FNR_SYSTEM in issue["diagnostics"]
    assert await matches(stack, "Patient") == []


async def test_valid_numbers_and_birth_dates(stack: Stack) -> None:
    classic = await create(stack, patient(FNR))
    assert classic["birthDate"] == "2005-03-21"
    assert (await read(stack, "Patient", classic["id"]))["birthDate"] == "2005-03-21"

    synthetic = await create(stack, patient(SYNTHETIC))
    assert synthetic["birthDate"] == "1955-11-10"

    agreeing = await create(stack, patient(FNR_2, birth_date="2000-05-12"))
    assert agreeing["birthDate"] == "2000-05-12"

    d_nummer = await create(stack, patient(DNR, system=DNR_SYSTEM))
    assert "birthDate" not in d_nummer
    assert "birthDate" not in await read(stack, "Patient", d_nummer["id"])
    assert d_nummer["identifier"] == [{"system": DNR_SYSTEM, "value": DNR}]

    by_birthdate = await matches(stack, "Patient?birthdate=2005-03-21")
    assert by_birthdate == [classic["id"]]


async def test_contradicting_birth_date_is_rejected(stack: Stack) -> None:
    reply = await stack.call("POST", "Patient", patient(FNR, birth_date="2005-03-22"))
    issue = assert_outcome(reply, 422, "business-rule", ["Patient.birthDate"])
    assert "2005-03-21" in issue["diagnostics"]
    assert await matches(stack, f"Patient?identifier={q(FNR_SYSTEM + '|' + FNR)}") == []


async def test_d_nummer_under_fnr_system_is_rejected(stack: Stack) -> None:
    reply = await stack.call("POST", "Patient", patient(DNR, system=FNR_SYSTEM))
    assert_outcome(reply, 422, "value", ["Patient.identifier[0].value"])


# --- business keys -------------------------------------------------------------------------


async def test_fnr_is_unique_per_patient(stack: Stack) -> None:
    first = await create(stack, patient(FNR, family="Først"))
    by_fnr = f"Patient?identifier={q(FNR_SYSTEM + '|' + FNR)}"

    reply = await stack.call("POST", "Patient", patient(FNR, family="Annen"))
    issue = assert_outcome(reply, 409, "duplicate", None)
    # The conflict does not name the Patient holding the number: the caller may have no
    # relation to that child (it finds the child by exact identifier, as a subset).
    assert FNR in issue["diagnostics"]
    assert first["id"] not in issue["diagnostics"]
    assert await matches(stack, by_fnr) == [first["id"]]
    unchanged = await read(stack, "Patient", first["id"])
    assert unchanged["meta"]["versionId"] == "1"
    assert unchanged["name"][0]["family"] == "Først"
    assert await matches(stack, "Patient") == [first["id"]]

    # Updating the same Patient and keeping its FNR is no conflict.
    changed = {**patient(FNR, family="Endret"), "id": first["id"]}
    reply = await stack.call("PUT", f"Patient/{first['id']}", changed)
    assert reply.status == 200, reply.body
    assert reply.json()["meta"]["versionId"] == "2"
    assert reply.json()["name"][0]["family"] == "Endret"

    # Another Patient may not take the number over by an update either: a client may not
    # change a person number at all, and the population register (which may) finds it taken.
    other = await create(stack, patient(FNR_2))
    taken = {**patient(FNR), "id": other["id"]}
    reply = await stack.call("PUT", f"Patient/{other['id']}", taken)
    assert reply.status == 422, reply.body
    refused = {tuple(i["expression"]): i["diagnostics"] for i in reply.issues()}
    assert "population register" in refused[("Patient.identifier",)]
    reply = await stack.call("PUT", f"Patient/{other['id']}", taken, token=stack.register_token())
    issue = assert_outcome(reply, 409, "duplicate", None)
    assert first["id"] not in issue["diagnostics"]
    assert (await read(stack, "Patient", other["id"]))["identifier"][0]["value"] == FNR_2

    # After the first Patient is deleted, the number is free again.
    reply = await stack.call("DELETE", f"Patient/{first['id']}")
    assert reply.status == 204, reply.body
    again = await create(stack, patient(FNR, family="Ny"))
    assert again["id"] != first["id"]
    assert await matches(stack, by_fnr) == [again["id"]]


async def test_orgnr_is_unique_per_organization(stack: Stack) -> None:
    operator = stack.operator_token()
    first = await create(stack, organization(ORGNR_BUP, "bup", "BUP Oslo"))
    reply = await stack.call(
        "POST", "Organization", organization(ORGNR_BUP, "bupa", "BUPA"), token=operator
    )
    issue = assert_outcome(reply, 409, "duplicate", None)
    assert f"Organization/{first['id']}" in issue["diagnostics"]
    assert await matches(stack, "Organization", token=operator) == [first["id"]]
    unchanged = await read(stack, "Organization", first["id"], token=operator)
    assert (unchanged["meta"]["versionId"], unchanged["name"]) == ("1", "BUP Oslo")


# --- organisations -------------------------------------------------------------------------


async def test_organization_validation(stack: Stack) -> None:
    operator = stack.operator_token()
    reply = await stack.call(
        "POST", "Organization", organization(ORGNR_BUP, None, "Uten type"), token=operator
    )
    assert_outcome(reply, 422, "required", ["Organization.type"])

    reply = await stack.call(
        "POST", "Organization", organization(ORGNR_BUP, "sykehus", "X"), token=operator
    )
    issue = assert_outcome(reply, 422, "code-invalid", ["Organization.type"])
    assert "sykehus" in issue["diagnostics"]

    two_kinds = organization(ORGNR_BUP, "bup", "To typer")
    two_kinds["type"][0]["coding"].append({"system": KIND_SYSTEM, "code": "dps"})
    reply = await stack.call("POST", "Organization", two_kinds, token=operator)
    assert_outcome(reply, 422, "required", ["Organization.type"])

    reply = await stack.call(
        "POST", "Organization", organization(ORGNR_BAD, "bup", "Feil"), token=operator
    )
    issue = assert_outcome(reply, 422, "value", ["Organization.identifier[0].value"])
    assert ORGNR_BAD in issue["diagnostics"]

    bad_municipality = organization(ORGNR_BUP, "bup", "BUP", kommunenummer="301")
    reply = await stack.call("POST", "Organization", bad_municipality, token=operator)
    assert_outcome(reply, 422, "value", ["Organization.address[0].extension"])

    assert await matches(stack, "Organization", token=operator) == []

    # Only the operator registers organisations: a registered organisation may not, even
    # a valid one (the kind it states would decide what others may do).
    reply = await stack.call("POST", "Organization", organization(ORGNR_BUP, "bup", "BUP"))
    assert_outcome(reply, 403, "forbidden", None)
    assert await matches(stack, f"Organization?identifier={ORGNR_BUP}", token=operator) == []


async def test_organization_search(stack: Stack) -> None:
    # Searched as the operator, so that no organisation but these three is registered
    # (a registered organisation's token would be the fourth).
    operator = stack.operator_token()

    async def found(query: str) -> list[str]:
        return await matches(stack, query, token=operator)

    bvt = await create(
        stack,
        organization(
            ORGNR_BVT, "barnevernstjeneste", "Barneverntjenesten i Oslo", kommunenummer="0301"
        ),
    )
    institution = await create(
        stack,
        organization(
            ORGNR_INSTITUTION,
            "barneverninstitusjon",
            "Åsly ungdomshjem",
            kommunenummer="3201",
            alias=["Barnevernsinstitusjon Bærum"],
        ),
    )
    bup = await create(stack, organization(ORGNR_BUP, "bup", "BUP Oslo", kommunenummer="0301"))

    assert await found(f"Organization?identifier={q(ORGNR_SYSTEM + '|' + ORGNR_BVT)}") == [
        bvt["id"]
    ]
    assert await found(f"Organization?identifier={ORGNR_BUP}") == [bup["id"]]
    assert await found(f"Organization?identifier={q('urn:example|' + ORGNR_BUP)}") == []
    assert await found("Organization?type=barneverninstitusjon") == [institution["id"]]
    assert await found(f"Organization?type={q(KIND_SYSTEM + '|bup')}") == [bup["id"]]
    assert await found(f"Organization?type={q('urn:example|bup')}") == []
    assert await found("Organization?type=bup,barnevernstjeneste") == sorted([bup["id"], bvt["id"]])
    assert await found("Organization?name=barnevern") == sorted(
        [bvt["id"], institution["id"]]  # the institution by its alias
    )
    assert await found("Organization?name=BARNEVERNTJENESTEN%20I") == [bvt["id"]]
    assert await found("Organization?name=asly") == [institution["id"]]
    assert await found("Organization?name=oslo") == []  # prefix, not contains
    assert await found("Organization?municipality=0301") == sorted([bvt["id"], bup["id"]])
    assert await found(f"Organization?municipality={q(KOMMUNENUMMER_SYSTEM + '|3201')}") == [
        institution["id"]
    ]
    assert await found("Organization?municipality=4601") == []
    assert await found("Organization?municipality=0301&type=bup") == [bup["id"]]

    # Any registered organisation reads the register (here the institution itself).
    token = stack.token(orgnr=ORGNR_INSTITUTION, kind="barneverninstitusjon")
    assert await matches(stack, "Organization?type=bup", token=token) == [bup["id"]]


# --- parental responsibility ---------------------------------------------------------------


async def test_related_person_with_parental_responsibility(stack: Stack) -> None:
    child = await create(stack, patient(FNR))
    other_child = await create(stack, patient(FNR_2))
    parent = await create(stack, related_person(child["id"], "felles"))
    other_parent = await create(stack, related_person(other_child["id"], "mor"))

    assert await matches(stack, f"RelatedPerson?patient=Patient/{child['id']}") == [parent["id"]]
    assert await matches(stack, f"RelatedPerson?patient={child['id']}") == [parent["id"]]
    by_identifier = f"RelatedPerson?patient:identifier={q(FNR_SYSTEM + '|' + FNR)}"
    assert await matches(stack, by_identifier) == [parent["id"]]
    by_identifier_2 = f"RelatedPerson?patient:identifier={q(FNR_SYSTEM + '|' + FNR_2)}"
    assert await matches(stack, by_identifier_2) == [other_parent["id"]]
    unknown = f"RelatedPerson?patient:identifier={q(FNR_SYSTEM + '|' + FNR_ADULT)}"
    assert await matches(stack, unknown) == []
    relationship = f"RelatedPerson?relationship={q(PARENTAL_RESPONSIBILITY_SYSTEM + '|felles')}"
    assert await matches(stack, relationship) == [parent["id"]]

    register = stack.register_token()
    reply = await stack.call(
        "POST", "RelatedPerson", related_person(child["id"], "bestemor"), token=register
    )
    issue = assert_outcome(reply, 422, "code-invalid", ["RelatedPerson.relationship"])
    assert "bestemor" in issue["diagnostics"]
    assert await matches(stack, "RelatedPerson") == sorted([parent["id"], other_parent["id"]])

    # Parental responsibility is the population register's to state, not an organisation's.
    reply = await stack.call("POST", "RelatedPerson", related_person(child["id"], "far"))
    assert_outcome(reply, 403, "forbidden", None)
    assert await matches(stack, "RelatedPerson", token=register) == sorted(
        [parent["id"], other_parent["id"]]
    )


# --- care orders ---------------------------------------------------------------------------


async def test_the_holder_of_an_open_care_order_stays_in_the_register(stack: Stack) -> None:
    """Only the holder ends a care order: were it removed, no one could (registered anew,
    it is another Organization)."""
    operator = stack.operator_token()
    bvt = await create(stack, organization(ORGNR_BVT, "barnevernstjeneste", "Bvt Oslo"))
    holder = barnevernstjeneste(stack, ORGNR_BVT)
    child = await create(
        stack, patient(FNR, contact=[care_order(bvt["id"], "2024-01-15")]), token=holder
    )
    reply = await stack.call("DELETE", f"Organization/{bvt['id']}", token=operator)
    issue = assert_outcome(reply, 409, "business-rule", None)
    assert "holds a care order in force" in issue["diagnostics"]
    assert child["id"] not in issue["diagnostics"]
    assert (await read(stack, "Organization", bvt["id"], token=operator))["id"] == bvt["id"]

    def end(day: date) -> Json:
        return {"resourceType": "Parameters",
                "parameter": [{"name": "action", "valueCode": "end"},
                              {"name": "date", "valueDate": day.isoformat()}]}  # fmt: skip

    # An order ending ahead is in force until its last day, and so is its holder.
    for last_day in (today() + timedelta(days=30), today() - timedelta(days=1)):
        care = f"Patient/{child['id']}/$care-order"
        ended = await stack.call("POST", care, end(last_day), token=holder)
        assert ended.status == 200, ended.body
        reply = await stack.call("DELETE", f"Organization/{bvt['id']}", token=operator)
        assert reply.status == (409 if last_day >= today() else 204), reply.body

    # The ended order is history: the child's record is still written, the order kept.
    register = stack.register_token()
    record = await read(stack, "Patient", child["id"], token=register)
    renamed = {**record, "name": [{"family": "Nordmann", "given": ["Kari", "Marie"]}]}
    written = await stack.call("PUT", f"Patient/{child['id']}", renamed, token=register)
    assert written.status == 200, written.body
    assert written.json()["contact"] == record["contact"]


async def test_a_holder_deleted_while_care_orders_are_written_holds_none(stack: Stack) -> None:
    """A barnevernstjeneste deleted while it writes care orders: either the deletion
    waits and is refused (409), or the writes wait and are refused (422); never both
    succeed, which would leave an open care order no one could end."""
    operator = stack.operator_token()
    for round_ in range(8):
        number = orgnr(300 + round_)
        holder = await create(
            stack, organization(number, "barnevernstjeneste", f"Bvt {round_}", kommunenummer="0301")
        )
        token = barnevernstjeneste(stack, number)
        assert (await stack.call("GET", f"Organization/{holder['id']}", token=token)).status == 200
        ordered = patient(None, family=f"Barn{round_}",
                          contact=[care_order(holder["id"], "2026-01-01")])  # fmt: skip
        deleted, *written = await asyncio.gather(
            stack.call("DELETE", f"Organization/{holder['id']}", token=operator),
            *(stack.call("POST", "Patient", ordered, token=token) for _ in range(3)),
        )
        statuses = sorted(reply.status for reply in written)
        assert deleted.status in (204, 409), deleted.body
        assert set(statuses) <= {201, 403, 422}, [reply.body for reply in written]
        if deleted.status == 204:
            assert 201 not in statuses, (round_, statuses)
        else:
            assert 201 in statuses, (round_, statuses)


async def test_care_order_on_patient(stack: Stack) -> None:
    bvt = await create(stack, organization(ORGNR_BVT, "barnevernstjeneste", "Bvt Oslo"))
    other_bvt = await create(stack, organization(ORGNR_BUP, "barnevernstjeneste", "Bvt Bærum"))
    holder = barnevernstjeneste(stack, ORGNR_BVT)
    other_holder = barnevernstjeneste(stack, ORGNR_BUP)
    child = await create(
        stack, patient(FNR, contact=[care_order(bvt["id"], "2024-01-15")]), token=holder
    )
    await create(stack, patient(FNR_2), token=holder)

    by_bvt = f"Patient?care-order-organization=Organization/{bvt['id']}"
    assert await matches(stack, by_bvt, token=holder) == [child["id"]]
    # The holder names itself as a relative reference or by its bare id.
    bare = f"Patient?care-order-organization={bvt['id']}"
    assert await matches(stack, bare, token=holder) == [child["id"]]
    by_other = f"Patient?care-order-organization=Organization/{other_bvt['id']}"
    assert await matches(stack, by_other, token=other_holder) == []

    # Who holds a care order is searched only by the holder, naming itself.
    for query, token in ((by_other, holder), (by_bvt, other_holder), (by_bvt, stack.token())):
        reply = await stack.call("GET", query, token=token)
        assert_outcome(reply, 403, "forbidden", ["care-order-organization"])

    # A care order is recorded only by the barnevernstjeneste holding it, naming itself.
    for token in (other_holder, stack.token()):
        reply = await stack.call(
            "POST",
            "Patient",
            patient(FNR_ADULT, contact=[care_order(bvt["id"], "2024-01-15")]),
            token=token,
        )
        assert_outcome(reply, 422, "business-rule", ["Patient.contact"])

    reply = await stack.call(
        "POST", "Patient", patient(FNR_ADULT, contact=[care_order(bvt["id"], None)]), token=holder
    )
    assert_outcome(reply, 422, "required", ["Patient.contact[0].period.start"])
    by_adult = f"Patient?identifier={q(FNR_SYSTEM + '|' + FNR_ADULT)}"
    for token in (holder, other_holder, stack.token()):
        assert await matches(stack, by_adult, token=token) == []


async def test_care_order_must_name_a_registered_barnevernstjeneste(stack: Stack) -> None:
    bup = await create(stack, organization(ORGNR_BUP, "bup", "BUP Oslo"))
    holder = barnevernstjeneste(stack)
    for named in (bup["id"], "no-such-organization"):
        reply = await stack.call(
            "POST", "Patient", patient(FNR, contact=[care_order(named, "2024-01-15")]), token=holder
        )
        issue = assert_outcome(reply, 422, "business-rule", ["Patient.contact[0].organization"])
        assert f"Organization/{named}" in issue["diagnostics"]
    by_fnr = f"Patient?identifier={q(FNR_SYSTEM + '|' + FNR)}"
    assert await matches(stack, by_fnr, token=holder) == []


async def test_patient_kommunenummer_is_checked(stack: Stack) -> None:
    body = patient(FNR)
    body["address"] = organization(None, None, "x", kommunenummer="03011")["address"]
    reply = await stack.call("POST", "Patient", body)
    assert_outcome(reply, 422, "value", ["Patient.address[0].extension"])


# --- _include and _revinclude --------------------------------------------------------------


async def test_include_and_revinclude(stack: Stack) -> None:
    # A PractitionerRole names the caller's own organisation (the default token's).
    own = await stack.admit(DEFAULT_ORGNR, "bup")
    other = await create(stack, organization(ORGNR_BUP, "bup", "BUP Oslo"))
    doctor = await create(
        stack,
        {
            "resourceType": "Practitioner",
            "identifier": [{"system": HPR_SYSTEM, "value": "9144900"}],
            "name": [{"family": "Lege", "given": ["Lise"]}],
        },
    )
    await create(stack, {"resourceType": "Practitioner", "name": [{"family": "Annen"}]})
    role = await create(
        stack,
        {
            "resourceType": "PractitionerRole",
            "practitioner": {"reference": f"Practitioner/{doctor['id']}"},
            "organization": {"reference": f"Organization/{own}"},
            "code": [{"coding": [{"system": ROLE_SYSTEM, "code": "barnevernansvarlig"}]}],
        },
    )
    reply = await stack.call(
        "POST",
        "PractitionerRole",
        {
            "resourceType": "PractitionerRole",
            "practitioner": {"reference": f"Practitioner/{doctor['id']}"},
            "organization": {"reference": f"Organization/{other['id']}"},
            "code": [{"coding": [{"system": ROLE_SYSTEM, "code": "barnevernansvarlig"}]}],
        },
    )
    assert_outcome(reply, 403, "forbidden", ["PractitionerRole.organization"])
    reply = await stack.call(
        "POST",
        "PractitionerRole",
        {
            "resourceType": "PractitionerRole",
            "practitioner": {"reference": f"Practitioner/{doctor['id']}"},
            "code": [{"coding": [{"system": ROLE_SYSTEM, "code": "overlege"}]}],
        },
    )
    assert_outcome(reply, 422, "code-invalid", ["PractitionerRole.code"])

    bundle = await search(stack, "PractitionerRole?_include=PractitionerRole:practitioner")
    assert entries(bundle, "match") == [("PractitionerRole", role["id"])]
    assert entries(bundle, "include") == [("Practitioner", doctor["id"])]

    child = await create(stack, patient(FNR))
    other_child = await create(stack, patient(FNR_2))
    parent = await create(stack, related_person(child["id"]))
    await create(stack, related_person(other_child["id"], "far"))
    bundle = await search(stack, f"Patient?_id={child['id']}&_revinclude=RelatedPerson:patient")
    assert entries(bundle, "match") == [("Patient", child["id"])]
    assert entries(bundle, "include") == [("RelatedPerson", parent["id"])]


# --- events --------------------------------------------------------------------------------


class EventReader:
    """Every event of this test's stream from its first message, through an ordered push
    consumer (ephemeral, redelivers nothing), kept in stream order with its subject."""

    def __init__(self, js: JetStreamContext, stream: str) -> None:
        self.js = js
        self.stream = stream
        self.events: list[tuple[str, DomainEvent]] = []

    async def receive(self, message: Msg) -> None:
        self.events.append((message.subject, DomainEvent.model_validate_json(message.data)))

    async def until(
        self, predicate: Callable[[list[DomainEvent]], bool], within: float = 5.0
    ) -> list[DomainEvent]:
        """Wait (bounded) until the events received so far satisfy `predicate`."""
        deadline = time.monotonic() + within
        while not predicate(self.all()):
            assert time.monotonic() < deadline, (
                f"events not seen within {within}s: {[e.type for e in self.all()]}"
            )
            await asyncio.sleep(0.05)
        return self.all()

    async def settle(self, within: float = 5.0) -> int:
        """Wait until everything the stream holds has been received and nothing more
        arrives for a short while; return the stream's message count."""
        deadline = time.monotonic() + within
        while True:
            info = await self.js.stream_info(self.stream)
            stored = info.state.messages
            if stored == len(self.events):
                await asyncio.sleep(0.4)
                again = await self.js.stream_info(self.stream)
                if again.state.messages == stored == len(self.events):
                    return stored
            assert time.monotonic() < deadline, f"stream holds {stored}, got {len(self.events)}"
            await asyncio.sleep(0.05)

    def all(self) -> list[DomainEvent]:
        return [event for _, event in self.events]

    def named(self, event_type: str) -> list[tuple[str, DomainEvent]]:
        return [(subject, event) for subject, event in self.events if event.type == event_type]


@pytest.fixture
async def events(stack: Stack) -> AsyncIterator[EventReader]:
    nc = await nats.connect(stack.settings.nats_url)
    reader = EventReader(nc.jetstream(), stack.settings.stream_name)
    sub = await reader.js.subscribe(
        f"{stack.settings.nats_prefix}.events.>",
        stream=stack.settings.stream_name,
        ordered_consumer=True,
        cb=reader.receive,
    )
    try:
        yield reader
    finally:
        await sub.unsubscribe()
        await nc.close()


def has(event_type: str, resource_id: str, count: int = 1) -> Callable[[list[DomainEvent]], bool]:
    def seen(events: list[DomainEvent]) -> bool:
        found = [e for e in events if e.type == event_type and e.resource_id == resource_id]
        return len(found) >= count

    return seen


async def test_domain_events(stack: Stack, events: EventReader) -> None:
    prefix = stack.settings.nats_prefix
    bvt = await create(
        stack, organization(ORGNR_BVT, "barnevernstjeneste", "Bvt", kommunenummer="0301")
    )
    holder = barnevernstjeneste(stack)  # registered above, by the operator
    child = await create(stack, patient(FNR), token=holder)
    pid = child["id"]

    await events.until(has("directory.Patient.created", pid))
    [(subject, created)] = events.named("directory.Patient.created")
    assert subject == f"{prefix}.events.directory.Patient.created.{pid}"
    assert (created.source, created.resource_type, created.resource_id) == (
        "directory",
        "Patient",
        pid,
    )
    assert (created.patient, created.version_id, created.name) == (pid, "1", "created")

    # The barnevernstjeneste records its care order.
    with_order = {**child, "contact": [care_order(bvt["id"], "2024-01-15")]}
    reply = await stack.call("PUT", f"Patient/{pid}", with_order, token=holder)
    assert reply.status == 200, reply.body
    await events.until(has("directory.Patient.care-order-started", pid))
    [(subject, started)] = events.named("directory.Patient.care-order-started")
    assert subject == f"{prefix}.events.directory.Patient.care-order-started.{pid}"
    assert started.patient == pid
    assert started.version_id == "2"
    assert started.data["organization"] == f"Organization/{bvt['id']}"
    assert (started.data["start"], started.data["end"]) == ("2024-01-15", None)

    # It ends.
    ended_order = {**child, "contact": [care_order(bvt["id"], "2024-01-15", "2024-06-30")]}
    reply = await stack.call("PUT", f"Patient/{pid}", ended_order, token=holder)
    assert reply.status == 200, reply.body
    await events.until(has("directory.Patient.care-order-ended", pid))
    [(subject, ended)] = events.named("directory.Patient.care-order-ended")
    assert subject == f"{prefix}.events.directory.Patient.care-order-ended.{pid}"
    assert ended.version_id == "3"
    assert ended.data["organization"] == f"Organization/{bvt['id']}"
    assert (ended.data["start"], ended.data["end"]) == ("2024-01-15", "2024-06-30")

    # Parental responsibility on a new RelatedPerson, from the population register.
    parent = await create(stack, related_person(pid, "felles"))
    await events.until(has("directory.RelatedPerson.parental-responsibility-changed", parent["id"]))
    [(subject, changed)] = events.named("directory.RelatedPerson.parental-responsibility-changed")
    expected = f"{prefix}.events.directory.RelatedPerson.parental-responsibility-changed.{pid}"
    assert subject == expected
    assert (changed.resource_id, changed.patient) == (parent["id"], pid)
    assert (changed.data["before"], changed.data["after"]) == ([], ["felles"])

    # The operator registers a new child-welfare institution.
    institution = await create(
        stack,
        organization(ORGNR_INSTITUTION, "barneverninstitusjon", "Åsly", kommunenummer="3201"),
    )
    await events.until(has("directory.Organization.institution-registered", institution["id"]))
    [(subject, registered)] = events.named("directory.Organization.institution-registered")
    assert subject == f"{prefix}.events.directory.Organization.institution-registered._"
    assert (registered.resource_id, registered.patient) == (institution["id"], None)
    assert registered.data["municipalities"] == ["3201"]

    # Everything, once, in order.
    stored = await events.settle()
    assert [(e.type, e.resource_id) for e in events.all()] == [
        ("directory.Organization.created", bvt["id"]),
        ("directory.Patient.created", pid),
        ("directory.Patient.updated", pid),
        ("directory.Patient.care-order-started", pid),
        ("directory.Patient.updated", pid),
        ("directory.Patient.care-order-ended", pid),
        ("directory.RelatedPerson.created", parent["id"]),
        ("directory.RelatedPerson.parental-responsibility-changed", parent["id"]),
        ("directory.Organization.created", institution["id"]),
        ("directory.Organization.institution-registered", institution["id"]),
    ]
    ids = [e.id for e in events.all()]
    assert len(set(ids)) == len(ids) == stored == 10
    # Each event names who acted: the operator, the barnevernstjeneste, the register.
    actors = [
        (e.data["actor"].get("credential", "organisation"), e.data["actor"].get("orgnr"))
        for e in events.all()
    ]
    operator, register = ("operator", None), ("register", None)
    holder_org = ("organisation", ORGNR_BVT)
    assert actors == [operator, *[holder_org] * 5, register, register, operator, operator]


async def test_rejected_write_raises_no_event(stack: Stack, events: EventReader) -> None:
    own = await stack.admit(DEFAULT_ORGNR, "bup")  # the operator registers the caller
    reply = await stack.call("POST", "Patient", patient(INVALID_FNR))
    assert reply.status == 422, reply.body
    first = await create(stack, patient(FNR))
    reply = await stack.call("POST", "Patient", patient(FNR))
    assert reply.status == 409, reply.body
    reply = await stack.call("POST", "Organization", organization(ORGNR_BUP, "bup", "BUP"))
    assert reply.status == 403, reply.body  # only the operator registers organisations
    marker = await create(stack, organization(ORGNR_BUP, "bup", "BUP"))
    await events.until(has("directory.Organization.created", marker["id"]))
    await events.settle()
    assert [(e.type, e.resource_id) for e in events.all()] == [
        ("directory.Organization.created", own),
        ("directory.Patient.created", first["id"]),
        ("directory.Organization.created", marker["id"]),
    ]


# --- $validate -----------------------------------------------------------------------------


async def test_validate_reports_without_storing(stack: Stack) -> None:
    reply = await stack.call("POST", "Patient/$validate", patient(INVALID_FNR))
    assert reply.status == 200, reply.body
    issue = only_issue(reply)
    assert (issue["severity"], issue["code"]) == ("error", "value")
    assert issue["expression"] == ["Patient.identifier[0].value"]

    reply = await stack.call("POST", "Patient/$validate", patient(FNR, birth_date="1999-01-01"))
    assert reply.status == 200, reply.body
    issue = only_issue(reply)
    assert (issue["severity"], issue["expression"]) == ("error", ["Patient.birthDate"])

    reply = await stack.call("POST", "Patient/$validate", patient(FNR))
    assert reply.status == 200, reply.body
    issue = only_issue(reply)
    assert (issue["severity"], issue["code"]) == ("information", "informational")

    parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": "resource", "resource": patient(FNR_2)}],
    }
    reply = await stack.call("POST", "Patient/$validate", parameters)
    assert reply.status == 200, reply.body
    assert only_issue(reply)["severity"] == "information"

    assert await matches(stack, "Patient") == []
    assert await matches(stack, f"Patient?identifier={q(FNR_SYSTEM + '|' + FNR)}") == []
    # Validation claimed nothing: the number can be stored afterwards.
    await create(stack, patient(FNR))


async def test_concurrent_creates_with_the_same_fnr(stack: Stack) -> None:
    # Registered first, so the concurrent requests only race for the number.
    await stack.admit(DEFAULT_ORGNR, "bup")
    replies = await asyncio.gather(
        *(stack.call("POST", "Patient", patient(FNR, family=f"P{i}")) for i in range(5))
    )
    statuses = sorted(r.status for r in replies)
    assert statuses == [201, 409, 409, 409, 409], [r.body for r in replies]
    [winner] = [r.json() for r in replies if r.status == 201]
    for reply in replies:
        if reply.status == 409:
            issue = assert_outcome(reply, 409, "duplicate", None)
            assert winner["id"] not in issue["diagnostics"]
    assert await matches(stack, "Patient") == [winner["id"]]


async def test_hpr_is_unique_per_practitioner(stack: Stack) -> None:
    practitioner = {
        "resourceType": "Practitioner",
        "identifier": [{"system": HPR_SYSTEM, "value": "9144900"}],
    }
    first = await create(stack, practitioner)
    reply = await stack.call("POST", "Practitioner", practitioner)
    issue = assert_outcome(reply, 409, "duplicate", None)
    assert f"Practitioner/{first['id']}" in issue["diagnostics"]
    bad = {"resourceType": "Practitioner", "identifier": [{"system": HPR_SYSTEM, "value": "91-44"}]}
    reply = await stack.call("POST", "Practitioner", bad)
    assert_outcome(reply, 422, "value", ["Practitioner.identifier[0].value"])
    assert await matches(stack, "Practitioner") == [first["id"]]


async def test_related_person_identifiers_are_checked(stack: Stack) -> None:
    child = await create(stack, patient(FNR))
    body = related_person(child["id"])
    body["identifier"] = [{"system": FNR_SYSTEM, "value": INVALID_FNR}]
    reply = await stack.call("POST", "RelatedPerson", body, token=stack.register_token())
    assert_outcome(reply, 422, "value", ["RelatedPerson.identifier[0].value"])
    body["identifier"] = [{"system": FNR_SYSTEM, "value": FNR_ADULT}]
    parent = await create(stack, body)
    assert "birthDate" not in parent  # only a Patient's birth date is derived


async def test_removing_an_ended_care_order_raises_no_second_ended_event(
    stack: Stack, events: EventReader
) -> None:
    bvt = await create(stack, organization(ORGNR_BVT, "barnevernstjeneste", "Bvt"))
    holder = barnevernstjeneste(stack)
    child = await create(
        stack, patient(FNR, contact=[care_order(bvt["id"], "2024-01-15")]), token=holder
    )
    pid = child["id"]
    ended = {**child, "contact": [care_order(bvt["id"], "2024-01-15", "2024-06-30")]}
    reply = await stack.call("PUT", f"Patient/{pid}", ended, token=holder)
    assert reply.status == 200, reply.body
    without = {key: value for key, value in child.items() if key != "contact"}
    reply = await stack.call("PUT", f"Patient/{pid}", without, token=holder)
    assert reply.status == 200, reply.body
    assert "contact" not in reply.json()  # the holder removed its own (ended) order
    await events.until(has("directory.Patient.updated", pid, count=2))
    await events.settle()
    assert [(e.name, e.version_id) for e in events.all() if e.resource_id == pid] == [
        ("created", "1"),
        ("care-order-started", "1"),
        ("updated", "2"),
        ("care-order-ended", "2"),
        ("updated", "3"),
    ]


async def test_parental_responsibility_needs_a_registered_patient_by_relative_reference(
    stack: Stack, events: EventReader
) -> None:
    """Parental responsibility decides who may consent for a child: it must point at a
    Patient of this server. Absolute URLs (possibly another server's Patient with the same
    id), unknown patients and malformed references are refused."""
    child = await create(stack, patient(FNR))
    pid = child["id"]
    for reference in (f"{stack.base}/Patient/{pid}", "Patient/nope", "Patient/a b",
                      "Patient/x.>", f"Patient/{pid}/_history/1"):  # fmt: skip
        body = related_person(pid)
        body["patient"] = {"reference": reference}
        reply = await stack.call("POST", "RelatedPerson", body, token=stack.register_token())
        assert_outcome(reply, 422, "business-rule", ["RelatedPerson.patient"])
    parent = await create(stack, related_person(pid))
    await events.until(has("directory.RelatedPerson.created", parent["id"]))
    [(subject, created)] = events.named("directory.RelatedPerson.created")
    assert created.patient == pid
    assert subject == f"{stack.settings.nats_prefix}.events.directory.RelatedPerson.created.{pid}"


async def test_a_person_is_related_to_a_child_by_one_record(stack: Stack) -> None:
    """A second record of the same parent for the same child would let one parent count
    as both holders of parental responsibility; for another child it is that child's."""
    child = await create(stack, patient(FNR))
    other_child = await create(stack, patient(FNR_2))
    holder = {"identifier": [{"system": FNR_SYSTEM, "value": FNR_ADULT}]}
    first = await create(stack, related_person(child["id"], "felles") | holder)
    again = await stack.call(
        "POST",
        "RelatedPerson",
        related_person(child["id"], "mor") | holder,
        token=stack.register_token(),
    )
    assert again.status == 409, again.body
    assert first["id"] not in again.body.decode(), "the holder is not named"
    await create(stack, related_person(other_child["id"], "felles") | holder)
    # A holder without a person number would escape the key: it is refused.
    without_number = related_person(child["id"], "far")
    del without_number["identifier"]
    reply = await stack.call("POST", "RelatedPerson", without_number, token=stack.register_token())
    assert_outcome(reply, 422, "business-rule", ["RelatedPerson.identifier"])
    without_responsibility = {k: v for k, v in without_number.items() if k != "relationship"}
    await create(stack, without_responsibility)
    assert len(await matches(stack, f"RelatedPerson?patient={child['id']}")) == 2


async def test_the_records_a_record_names_are_registered_here(stack: Stack) -> None:
    """A literal reference to an organisation, a practitioner, a role or a service names a
    record registered here and not deleted, by its relative reference; an organisation
    named by organisasjonsnummer alone is a registered one. Nothing is stored otherwise."""
    own = await search(stack, f"Organization?identifier={q(ORGNR_SYSTEM + '|' + DEFAULT_ORGNR)}")
    office = own["entry"][0]["resource"]["id"]
    await create(stack, organization(ORGNR_BVT, "barnevernstjeneste", "Barnevernet"))
    gone = await create(stack, organization(ORGNR_GP, "fastlege", "Legekontoret som ble lagt ned"))
    deleted = await stack.call("DELETE", f"Organization/{gone['id']}", token=stack.operator_token())
    assert deleted.status == 204, deleted.body
    doctor = await create(stack, {"resourceType": "Practitioner", "name": [{"family": "Lege"}]})

    def child(**elements: Any) -> Json:
        return {**patient(FNR), **elements}

    refused = [
        (child(managingOrganization={"reference": "Organization/no-such"}),
         "Patient.managingOrganization"),
        (child(managingOrganization={"reference": f"Organization/{gone['id']}"}),
         "Patient.managingOrganization"),
        (child(managingOrganization={"reference": f"{stack.base}/Organization/{office}"}),
         "Patient.managingOrganization"),
        (child(managingOrganization={"reference": f"Practitioner/{doctor['id']}"}),
         "Patient.managingOrganization"),
        (child(managingOrganization={"identifier": {"system": ORGNR_SYSTEM, "value": ORGNR_BAD}}),
         "Patient.managingOrganization.identifier"),
        (child(managingOrganization={"reference": f"Organization/{office}",
                                     "identifier": {"system": ORGNR_SYSTEM, "value": ORGNR_BVT}}),
         "Patient.managingOrganization.identifier"),
        (child(managingOrganization={"identifier": {"value": DEFAULT_ORGNR}}),
         "Patient.managingOrganization.identifier"),
        (child(managingOrganization={"identifier": {"system": ORGNR_SYSTEM,
                                                    "value": "0" + DEFAULT_ORGNR}}),
         "Patient.managingOrganization.identifier"),
        (child(contact=[{"name": {"family": "Skole"},
                         "organization": {"identifier": {"system": "urn:example", "value": "1"}}}]),
         "Patient.contact[0].organization.identifier"),
        (child(generalPractitioner=[{"identifier": {"system": ORGNR_SYSTEM,
                                                    "value": DEFAULT_ORGNR + " "}}]),
         "Patient.generalPractitioner[0].identifier"),
        (child(generalPractitioner=[{"reference": "Practitioner/no-such"}]),
         "Patient.generalPractitioner[0]"),
        (child(generalPractitioner=[{"reference": "PractitionerRole/no-such"}]),
         "Patient.generalPractitioner[0]"),
        (child(contact=[{"name": {"family": "Skole"},
                         "organization": {"reference": "Organization/no-such"}}]),
         "Patient.contact[0].organization"),
        ({"resourceType": "PractitionerRole", "practitioner": {"reference": "Practitioner/no"},
          "organization": {"reference": f"Organization/{office}"}},
         "PractitionerRole.practitioner"),
        ({"resourceType": "PractitionerRole",
          "practitioner": {"reference": f"Practitioner/{doctor['id']}"},
          "organization": {"reference": f"Organization/{office}"},
          "healthcareService": [{"reference": "HealthcareService/no-such"}]},
         "PractitionerRole.healthcareService[0]"),
        ({**organization(ORGNR_INSTITUTION, "bup", "BUP Avdeling", kommunenummer="0301"),
          "partOf": {"reference": "Organization/no-such"}},
         "Organization.partOf"),
    ]  # fmt: skip
    for body, where in refused:
        token = writer(stack, body["resourceType"])
        reply = await stack.call("POST", body["resourceType"], body, token=token)
        assert_outcome(reply, 422, "business-rule", [where])
    assert await matches(stack, f"Patient?identifier={q(FNR_SYSTEM + '|' + FNR)}") == []

    role = await create(
        stack,
        {"resourceType": "PractitionerRole",
         "practitioner": {"reference": f"Practitioner/{doctor['id']}"},
         "organization": {"reference": f"Organization/{office}"}},
    )  # fmt: skip
    await create(
        stack,
        child(managingOrganization={"reference": f"Organization/{office}"},
              generalPractitioner=[{"reference": f"PractitionerRole/{role['id']}"}]),
    )  # fmt: skip
