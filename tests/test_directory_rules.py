"""Table tests of the directory's pure rules (services/directory/domain) and of the events
the directory's resource definitions derive from a change (no I/O anywhere here).

DOMAIN.md §2 (organisation kinds, roles) and §3 (identifiers, parental responsibility).
"""

from __future__ import annotations

import copy
from datetime import date
from typing import Any

import pytest

from services.directory.domain.organisations import (
    check_municipalities,
    check_organisation_kind,
    check_roles,
    hpr_keys,
    is_institution,
    municipality_codes,
    organisation_keys,
)
from services.directory.domain.people import (
    care_order_changes,
    care_order_problems,
    identifier_problems,
    parental_responsibility_problems,
    person_number_systems,
    person_numbers,
)
from services.directory.domain.people import reconcile_birth_date as birth_date_problems
from services.directory.resources import (
    OrganizationDefinition,
    PatientDefinition,
    RelatedPersonDefinition,
)
from shared.codes import (
    CARE_ORDER_CODE,
    CONTACT_RELATIONSHIP_SYSTEM,
    MUNICIPALITY_EXTENSION,
    ORGANISATION_KIND_SYSTEM,
    PARENTAL_RESPONSIBILITY_SYSTEM,
    ROLE_SYSTEM,
    organisation_kinds,
)
from shared.family import CareOrder, care_orders, parental_responsibility
from shared.fhir.definitions import Change
from shared.fhir.errors import FhirError
from shared.identifiers import (
    DNR_SYSTEM,
    FHN_SYSTEM,
    FNR_SYSTEM,
    HPR_SYSTEM,
    KOMMUNENUMMER_SYSTEM,
    ORGNR_SYSTEM,
    CheckRule,
    PersonNumber,
    PersonNumberKind,
    parse_person_number,
)
from shared.rules import refuse
from shared.transport.wire import Caller

Json = dict[str, Any]

FNR = "21030550231"  # classic fødselsnummer, born 2005-03-21
FNR_1965 = "15076500565"  # born 1965-07-15
FNR_2010 = "15031050089"  # individnummer 500 with year < 40: born 2010-03-15
INVALID_FNR = "13057444850"  # the no-basis profile's own example: K2 fails
DNR = "70019950032"  # D-nummer: its date may be a registration date
SYNTHETIC = "10915596784"  # Skatteetaten synthetic (month + 80), born 1955-11-10
H_NUMMER = "21430510182"  # month + 40
RULE_2032 = "30108299939"  # valid only under the 2032 rule: no reliable birth date
FHN = "80000000098"
ORGNR = "974760673"
ORGNR_BAD_CHECK_DIGIT = "974760674"
HPR = "9144900"

BVT = "Organization/bvt-oslo"
BVT_2 = "Organization/bvt-bergen"


def ident(system: str, value: str) -> Json:
    return {"system": system, "value": value}


def check_identifiers(
    resource: Json, *, enforce_orgnr_check_digit: bool = True
) -> list[PersonNumber]:
    """The identifiers' problems refused as the directory refuses them; else the person
    numbers."""
    refuse(identifier_problems(resource, enforce_orgnr_check_digit=enforce_orgnr_check_digit))
    return person_numbers(resource)


def reconcile_birth_date(patient: Json, numbers: list[PersonNumber]) -> None:
    refuse(birth_date_problems(patient, numbers))


def check_care_orders(patient: Json) -> None:
    refuse(care_order_problems(patient))


def check_parental_responsibility(related: Json) -> None:
    refuse(parental_responsibility_problems(related))


def issue_expressions(exc: FhirError) -> list[tuple[str, ...]]:
    return [issue.expression for issue in exc.issues]


# --- check_identifiers -------------------------------------------------------------------


def test_fhn_fixture_is_a_valid_felles_hjelpenummer() -> None:
    number = parse_person_number(FHN, FHN_SYSTEM)
    assert number.kind is PersonNumberKind.FHN
    assert number.birth_date is None


@pytest.mark.parametrize(
    ("identifiers", "expected"),
    [
        pytest.param([ident(FNR_SYSTEM, FNR)], [(FNR, PersonNumberKind.FNR)], id="fnr"),
        pytest.param([ident(DNR_SYSTEM, DNR)], [(DNR, PersonNumberKind.D_NUMMER)], id="d-nummer"),
        pytest.param(
            [ident(FNR_SYSTEM, SYNTHETIC)], [(SYNTHETIC, PersonNumberKind.SYNTHETIC)], id="synth"
        ),
        pytest.param(
            [ident(FNR_SYSTEM, H_NUMMER)], [(H_NUMMER, PersonNumberKind.H_NUMMER)], id="h-nummer"
        ),
        pytest.param([ident(FHN_SYSTEM, FHN)], [(FHN, PersonNumberKind.FHN)], id="fhn"),
        pytest.param(
            [ident("urn:example:mrn", "abc"), ident(FNR_SYSTEM, FNR), ident(DNR_SYSTEM, DNR)],
            [(FNR, PersonNumberKind.FNR), (DNR, PersonNumberKind.D_NUMMER)],
            id="in-order-skipping-foreign-systems",
        ),
        pytest.param([ident(ORGNR_SYSTEM, ORGNR)], [], id="orgnr-is-no-person-number"),
        pytest.param([ident(HPR_SYSTEM, HPR)], [], id="hpr"),
        pytest.param([ident("urn:example:any", "not digits")], [], id="unknown-system"),
        pytest.param([{"system": FNR_SYSTEM}], [], id="no-value-is-skipped"),
        pytest.param([{"value": INVALID_FNR}], [], id="no-system-is-skipped"),
        pytest.param([], [], id="empty"),
    ],
)
def test_check_identifiers_accepts(
    identifiers: list[Json], expected: list[tuple[str, PersonNumberKind]]
) -> None:
    resource = {"resourceType": "Patient", "identifier": identifiers}
    numbers = check_identifiers(resource)
    assert [(n.value, n.kind) for n in numbers] == expected


def test_check_identifiers_without_identifier_element() -> None:
    assert check_identifiers({"resourceType": "Patient"}) == []


@pytest.mark.parametrize(
    ("resource_type", "identifiers", "expressions"),
    [
        pytest.param(
            "Patient", [ident(FNR_SYSTEM, INVALID_FNR)], ["Patient.identifier[0].value"], id="k2"
        ),
        pytest.param(
            "Patient",
            [ident("urn:example:mrn", "1"), ident(FNR_SYSTEM, INVALID_FNR)],
            ["Patient.identifier[1].value"],
            id="index-counts-every-identifier",
        ),
        pytest.param(
            "Patient",
            [ident(FNR_SYSTEM, INVALID_FNR), ident(FNR_SYSTEM, FNR), ident(DNR_SYSTEM, "123")],
            ["Patient.identifier[0].value", "Patient.identifier[2].value"],
            id="every-problem-reported",
        ),
        pytest.param(
            "Patient", [ident(FNR_SYSTEM, DNR)], ["Patient.identifier[0].value"], id="dnr-as-fnr"
        ),
        pytest.param(
            "Patient", [ident(DNR_SYSTEM, FNR)], ["Patient.identifier[0].value"], id="fnr-as-dnr"
        ),
        pytest.param(
            "Patient", [ident(FNR_SYSTEM, "2103055023")], ["Patient.identifier[0].value"], id="10"
        ),
        pytest.param(
            "RelatedPerson",
            [ident(FNR_SYSTEM, INVALID_FNR)],
            ["RelatedPerson.identifier[0].value"],
            id="related-person",
        ),
        pytest.param(
            "Organization",
            [ident(ORGNR_SYSTEM, ORGNR_BAD_CHECK_DIGIT)],
            ["Organization.identifier[0].value"],
            id="orgnr-check-digit",
        ),
        pytest.param(
            "Practitioner",
            [ident(HPR_SYSTEM, "91449OO")],
            ["Practitioner.identifier[0].value"],
            id="hpr-letters",
        ),
        pytest.param(
            "Organization",
            [ident(KOMMUNENUMMER_SYSTEM, "301")],
            ["Organization.identifier[0].value"],
            id="kommunenummer",
        ),
    ],
)
def test_check_identifiers_rejects(
    resource_type: str, identifiers: list[Json], expressions: list[str]
) -> None:
    resource = {"resourceType": resource_type, "identifier": identifiers}
    with pytest.raises(FhirError) as caught:
        check_identifiers(resource)
    assert caught.value.status == 422
    assert issue_expressions(caught.value) == [(e,) for e in expressions]
    assert all(i.code == "value" and i.severity == "error" for i in caught.value.issues)
    bad = identifiers[int(expressions[0].split("[")[1].split("]")[0])]
    assert bad["value"] in caught.value.issues[0].diagnostics


def test_check_identifiers_without_resource_type_names_resource() -> None:
    with pytest.raises(FhirError) as caught:
        check_identifiers({"identifier": [ident(FNR_SYSTEM, INVALID_FNR)]})
    assert issue_expressions(caught.value) == [("Resource.identifier[0].value",)]


@pytest.mark.parametrize(
    ("value", "enforce", "valid"),
    [
        (ORGNR, True, True),
        (ORGNR, False, True),
        (ORGNR_BAD_CHECK_DIGIT, True, False),
        (ORGNR_BAD_CHECK_DIGIT, False, True),  # national test environments (DOMAIN §3)
        ("97476067", False, False),  # the 9-digit format is always required
        ("97476067a", False, False),
    ],
)
def test_check_identifiers_orgnr_enforcement(value: str, enforce: bool, valid: bool) -> None:
    resource = {"resourceType": "Organization", "identifier": [ident(ORGNR_SYSTEM, value)]}
    if valid:
        assert check_identifiers(resource, enforce_orgnr_check_digit=enforce) == []
    else:
        with pytest.raises(FhirError) as caught:
            check_identifiers(resource, enforce_orgnr_check_digit=enforce)
        assert caught.value.status == 422
        assert issue_expressions(caught.value) == [("Organization.identifier[0].value",)]


def test_person_number_systems_only_person_systems() -> None:
    resource = {
        "identifier": [
            ident(FNR_SYSTEM, FNR),
            ident(ORGNR_SYSTEM, ORGNR),
            ident(DNR_SYSTEM, DNR),
            {"system": FHN_SYSTEM},
        ]
    }
    assert person_number_systems(resource) == {FNR: FNR_SYSTEM, DNR: DNR_SYSTEM}


# --- reconcile_birth_date ----------------------------------------------------------------


def numbers_of(*pairs: tuple[str, str]) -> list[PersonNumber]:
    return [parse_person_number(value, system) for system, value in pairs]


@pytest.mark.parametrize(
    ("numbers", "given", "expected"),
    [
        pytest.param([(FNR_SYSTEM, FNR)], None, "2005-03-21", id="derived-from-fnr"),
        pytest.param([(FNR_SYSTEM, FNR_1965)], None, "1965-07-15", id="1900s"),
        pytest.param([(FNR_SYSTEM, FNR_2010)], None, "2010-03-15", id="2000s"),
        pytest.param([(FNR_SYSTEM, SYNTHETIC)], None, "1955-11-10", id="synthetic"),
        pytest.param([(FNR_SYSTEM, FNR)], "2005-03-21", "2005-03-21", id="agrees"),
        pytest.param([(FNR_SYSTEM, FNR)], "2005-03", "2005-03", id="partial-month-agrees"),
        pytest.param([(FNR_SYSTEM, FNR)], "2005", "2005", id="partial-year-agrees"),
        pytest.param([(DNR_SYSTEM, DNR)], None, None, id="d-nummer-never-sets"),
        pytest.param([(DNR_SYSTEM, DNR)], "1999-12-24", "1999-12-24", id="d-nummer-no-clash"),
        pytest.param([(FNR_SYSTEM, H_NUMMER)], None, None, id="h-nummer-never-sets"),
        pytest.param([(FNR_SYSTEM, H_NUMMER)], "2011-01-01", "2011-01-01", id="h-nummer"),
        pytest.param([(FNR_SYSTEM, RULE_2032)], None, None, id="2032-rule-never-sets"),
        pytest.param([(FNR_SYSTEM, RULE_2032)], "2031-01-01", "2031-01-01", id="2032-no-clash"),
        pytest.param([(FHN_SYSTEM, FHN)], None, None, id="fhn"),
        pytest.param([], None, None, id="no-numbers"),
        pytest.param([(DNR_SYSTEM, DNR), (FNR_SYSTEM, FNR)], None, "2005-03-21", id="dnr-then"),
    ],
)
def test_reconcile_birth_date(
    numbers: list[tuple[str, str]], given: str | None, expected: str | None
) -> None:
    patient: Json = {"resourceType": "Patient"}
    if given is not None:
        patient["birthDate"] = given
    reconcile_birth_date(patient, numbers_of(*numbers))
    assert patient.get("birthDate") == expected
    assert ("birthDate" in patient) == (expected is not None)


@pytest.mark.parametrize(
    ("value", "given"),
    [
        (FNR, "2005-03-22"),
        (FNR, "2005-04"),
        (FNR, "2004"),
        (FNR, "1905-03-21"),
        (SYNTHETIC, "1955-11-11"),
        (FNR_2010, "1910-03-15"),
    ],
)
def test_reconcile_birth_date_contradiction(value: str, given: str) -> None:
    patient: Json = {"resourceType": "Patient", "birthDate": given}
    with pytest.raises(FhirError) as caught:
        reconcile_birth_date(patient, numbers_of((FNR_SYSTEM, value)))
    assert caught.value.status == 422
    assert [(i.code, i.expression) for i in caught.value.issues] == [
        ("business-rule", ("Patient.birthDate",))
    ]
    assert given in caught.value.issues[0].diagnostics
    assert patient["birthDate"] == given


def test_reconcile_birth_date_uses_number_not_its_kind_label() -> None:
    """A PersonNumber without a birth date never touches birthDate, whatever its kind."""
    number = PersonNumber(FNR, PersonNumberKind.FNR, CheckRule.CLASSIC, None)
    patient: Json = {"birthDate": "1999-01-01"}
    reconcile_birth_date(patient, [number])
    assert patient == {"birthDate": "1999-01-01"}
    dated = PersonNumber(FNR, PersonNumberKind.FNR, CheckRule.CLASSIC, date(2005, 3, 21))
    reconcile_birth_date(patient := {}, [dated])
    assert patient == {"birthDate": "2005-03-21"}


# --- care orders ---------------------------------------------------------------------------


def care_order(organization: str | None, start: str | None, end: str | None = None) -> Json:
    contact: Json = {
        "relationship": [
            {"coding": [{"system": CONTACT_RELATIONSHIP_SYSTEM, "code": "omsorgsovertakelse"}]}
        ]
    }
    if organization is not None:
        contact["organization"] = {"reference": organization}
    period: Json = {}
    if start is not None:
        period["start"] = start
    if end is not None:
        period["end"] = end
    if period:
        contact["period"] = period
    return contact


PARENT_CONTACT: Json = {
    "relationship": [
        {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131", "code": "N"}]}
    ],
    "name": {"family": "Hansen"},
}
OTHER_PROJECT_CODE: Json = {
    "relationship": [{"coding": [{"system": CONTACT_RELATIONSHIP_SYSTEM, "code": "fosterhjem"}]}],
    "organization": {"reference": BVT},
}
CARE_ORDER_CODE_WRONG_SYSTEM: Json = {
    "relationship": [{"coding": [{"system": "urn:example", "code": CARE_ORDER_CODE}]}],
    "organization": {"reference": BVT},
}


def patient_with(*contacts: Json) -> Json:
    return {"resourceType": "Patient", "contact": list(contacts)}


def test_care_order_code_constant() -> None:
    assert CARE_ORDER_CODE == "omsorgsovertakelse"


@pytest.mark.parametrize(
    ("patient", "expected"),
    [
        pytest.param(None, [], id="no-patient"),
        pytest.param({"resourceType": "Patient"}, [], id="no-contact"),
        pytest.param(
            patient_with(care_order(BVT, "2024-01-15")),
            [CareOrder(BVT, "2024-01-15", None)],
            id="active",
        ),
        pytest.param(
            patient_with(care_order(BVT, "2024-01-15", "2024-06-30")),
            [CareOrder(BVT, "2024-01-15", "2024-06-30")],
            id="ended",
        ),
        pytest.param(
            patient_with(
                PARENT_CONTACT,
                OTHER_PROJECT_CODE,
                CARE_ORDER_CODE_WRONG_SYSTEM,
                care_order(BVT_2, "2020-02-01", "2021-01-01"),
                care_order(BVT, "2024-01-15"),
            ),
            [CareOrder(BVT_2, "2020-02-01", "2021-01-01"), CareOrder(BVT, "2024-01-15", None)],
            id="only-care-orders-in-order",
        ),
        pytest.param(
            patient_with(
                {
                    "relationship": [
                        {"text": "x"},
                        {
                            "coding": [
                                {"system": "urn:example", "code": "x"},
                                {"system": CONTACT_RELATIONSHIP_SYSTEM, "code": CARE_ORDER_CODE},
                            ]
                        },
                    ],
                    "organization": {"reference": BVT},
                    "period": {"start": "2024-01-15"},
                }
            ),
            [CareOrder(BVT, "2024-01-15", None)],
            id="any-coding-of-any-relationship",
        ),
    ],
)
def test_care_orders(patient: Json | None, expected: list[CareOrder]) -> None:
    assert care_orders(patient) == expected


def test_care_order_as_data() -> None:
    assert CareOrder(BVT, "2024-01-15", None).as_data() == {
        "organization": BVT,
        "start": "2024-01-15",
        "end": None,
    }


ACTIVE = care_order(BVT, "2024-01-15")
ENDED = care_order(BVT, "2024-01-15", "2024-06-30")
ACTIVE_ORDER = CareOrder(BVT, "2024-01-15", None)
ENDED_ORDER = CareOrder(BVT, "2024-01-15", "2024-06-30")


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param(
            None, patient_with(ACTIVE), [("care-order-started", ACTIVE_ORDER)], id="created"
        ),
        pytest.param(
            patient_with(),
            patient_with(PARENT_CONTACT, ACTIVE),
            [("care-order-started", ACTIVE_ORDER)],
            id="added",
        ),
        pytest.param(patient_with(ACTIVE), patient_with(ACTIVE), [], id="unchanged-active"),
        pytest.param(
            patient_with(ACTIVE),
            patient_with(PARENT_CONTACT, ACTIVE),
            [],
            id="unchanged-other-contact-added",
        ),
        pytest.param(patient_with(ENDED), patient_with(ENDED), [], id="unchanged-ended"),
        pytest.param(
            patient_with(ENDED),
            patient_with(care_order(BVT, "2024-01-15", "2024-07-31")),
            [],
            id="end-corrected",
        ),
        pytest.param(
            patient_with(ACTIVE), patient_with(ENDED), [("care-order-ended", ENDED_ORDER)], id="end"
        ),
        pytest.param(
            patient_with(ACTIVE), patient_with(), [("care-order-ended", ACTIVE_ORDER)], id="removed"
        ),
        pytest.param(
            patient_with(ACTIVE), None, [("care-order-ended", ACTIVE_ORDER)], id="patient-deleted"
        ),
        pytest.param(
            patient_with(ENDED),
            patient_with(ACTIVE),
            [("care-order-started", ACTIVE_ORDER)],
            id="reopened",
        ),
        pytest.param(
            patient_with(ACTIVE),
            patient_with(ACTIVE, care_order(BVT_2, "2024-03-01")),
            [("care-order-started", CareOrder(BVT_2, "2024-03-01", None))],
            id="second-order",
        ),
        pytest.param(
            patient_with(ACTIVE),
            patient_with(care_order(BVT_2, "2024-01-15")),
            [
                ("care-order-started", CareOrder(BVT_2, "2024-01-15", None)),
                ("care-order-ended", ACTIVE_ORDER),
            ],
            id="moved-to-another-barnevernstjeneste",
        ),
        pytest.param(
            patient_with(PARENT_CONTACT),
            patient_with(OTHER_PROJECT_CODE, CARE_ORDER_CODE_WRONG_SYSTEM),
            [],
            id="not-care-orders",
        ),
        pytest.param(None, None, [], id="nothing"),
    ],
)
def test_care_order_changes(
    before: Json | None, after: Json | None, expected: list[tuple[str, CareOrder]]
) -> None:
    assert care_order_changes(before, after) == expected


def test_care_order_changes_removing_an_already_ended_order_ends_nothing() -> None:
    """An order that already ended (and raised care-order-ended then) did not end again
    when its contact is later removed from the record: no second care-order-ended."""
    ended_then = care_order_changes(patient_with(ACTIVE), patient_with(ENDED))
    assert ended_then == [("care-order-ended", ENDED_ORDER)]
    assert care_order_changes(patient_with(ENDED), patient_with()) == []


@pytest.mark.parametrize(
    ("contacts", "expressions"),
    [
        pytest.param([care_order(BVT, "2024-01-15")], [], id="complete"),
        pytest.param([care_order(BVT, "2024-01-15", "2024-02-01")], [], id="ended"),
        pytest.param([PARENT_CONTACT, OTHER_PROJECT_CODE], [], id="not-care-orders"),
        pytest.param(
            [care_order(None, "2024-01-15")], ["Patient.contact[0].organization"], id="no-org"
        ),
        pytest.param([care_order(BVT, None)], ["Patient.contact[0].period.start"], id="no-start"),
        pytest.param(
            [care_order(BVT, None, "2024-06-30")],
            ["Patient.contact[0].period.start"],
            id="end-without-start",
        ),
        pytest.param(
            [PARENT_CONTACT, care_order(None, None)],
            ["Patient.contact[1].organization", "Patient.contact[1].period.start"],
            id="both-missing-indexed",
        ),
        pytest.param(
            [care_order(BVT, None), PARENT_CONTACT, care_order(None, "2024-01-01")],
            ["Patient.contact[0].period.start", "Patient.contact[2].organization"],
            id="several-contacts",
        ),
    ],
)
def test_check_care_orders(contacts: list[Json], expressions: list[str]) -> None:
    patient = patient_with(*copy.deepcopy(contacts))
    if not expressions:
        check_care_orders(patient)
        return
    with pytest.raises(FhirError) as caught:
        check_care_orders(patient)
    assert caught.value.status == 422
    assert issue_expressions(caught.value) == [(e,) for e in expressions]
    assert {i.code for i in caught.value.issues} == {"required"}


def test_check_care_orders_organization_without_reference() -> None:
    contact = care_order(None, "2024-01-15")
    contact["organization"] = {"display": "Barnevernstjenesten i Oslo"}
    with pytest.raises(FhirError) as caught:
        check_care_orders(patient_with(contact))
    assert issue_expressions(caught.value) == [("Patient.contact[0].organization",)]


# --- parental responsibility ---------------------------------------------------------------


def related_person(*codings: Json) -> Json:
    return {
        "resourceType": "RelatedPerson",
        "patient": {"reference": "Patient/p1"},
        "relationship": [{"coding": [coding]} for coding in codings],
    }


def pr(code: str) -> Json:
    return {"system": PARENTAL_RESPONSIBILITY_SYSTEM, "code": code}


MOTHER = {"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH"}


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        pytest.param(None, [], id="none"),
        pytest.param({"resourceType": "RelatedPerson"}, [], id="no-relationship"),
        pytest.param(related_person(MOTHER), [], id="other-system"),
        pytest.param(related_person(pr("felles")), ["felles"], id="felles"),
        pytest.param(related_person(pr("mor"), MOTHER), ["mor"], id="mor"),
        pytest.param(related_person(pr("medmor"), pr("andre")), ["andre", "medmor"], id="sorted"),
        pytest.param(
            related_person({"system": PARENTAL_RESPONSIBILITY_SYSTEM}), [], id="coding-no-code"
        ),
        pytest.param(related_person(pr("bestemor")), ["bestemor"], id="unknown-still-listed"),
    ],
)
def test_parental_responsibility(resource: Json | None, expected: list[str]) -> None:
    assert parental_responsibility(resource) == expected


@pytest.mark.parametrize("code", ["felles", "mor", "far", "medmor", "andre", "ukjent"])
def test_check_parental_responsibility_known_codes(code: str) -> None:
    check_parental_responsibility(related_person(pr(code), MOTHER))


@pytest.mark.parametrize(
    "codings",
    [
        pytest.param([pr("bestemor")], id="unknown"),
        pytest.param([pr("felles"), pr("Felles")], id="case-sensitive"),
        pytest.param([MOTHER, pr("")], id="empty-code"),
    ],
)
def test_check_parental_responsibility_unknown_codes(codings: list[Json]) -> None:
    with pytest.raises(FhirError) as caught:
        check_parental_responsibility(related_person(*codings))
    assert caught.value.status == 422
    assert [(i.code, i.expression) for i in caught.value.issues] == [
        ("code-invalid", ("RelatedPerson.relationship",))
    ]


def test_check_parental_responsibility_ignores_other_systems() -> None:
    check_parental_responsibility(related_person({"system": "urn:example", "code": "bestemor"}))


# --- organisation kinds --------------------------------------------------------------------


def kind(code: str, system: str = ORGANISATION_KIND_SYSTEM) -> Json:
    return {"system": system, "code": code}


def organization(*type_codings: list[Json], addresses: list[Json] | None = None) -> Json:
    resource: Json = {
        "resourceType": "Organization",
        "type": [{"coding": codings} for codings in type_codings],
    }
    if addresses is not None:
        resource["address"] = addresses
    return resource


PROV = {"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": "prov"}


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        pytest.param(None, [], id="none"),
        pytest.param({"resourceType": "Organization"}, [], id="no-type"),
        pytest.param(organization([PROV]), [], id="other-system"),
        pytest.param(organization([PROV, kind("bup")]), ["bup"], id="bup"),
        pytest.param(organization([kind("bup")], [kind("dps")]), ["bup", "dps"], id="two"),
    ],
)
def test_organisation_kinds(resource: Json | None, expected: list[str]) -> None:
    assert organisation_kinds(resource) == expected


ALL_KINDS = [
    "fastlege",
    "bup",
    "bupa",
    "dps",
    "barnevernstjeneste",
    "barneverninstitusjon",
    "bufetat",
    "kommune-helse",
    "legevakt",
    "skole",
    "barnehage",
    "ppt",
    "nav",
]


@pytest.mark.parametrize("code", ALL_KINDS)
def test_check_organisation_kind_accepts_every_domain_kind(code: str) -> None:
    check_organisation_kind(organization([PROV], [kind(code)]))


@pytest.mark.parametrize(
    ("resource", "code"),
    [
        pytest.param({"resourceType": "Organization"}, "required", id="no-type"),
        pytest.param(organization([PROV]), "required", id="no-kind-coding"),
        pytest.param(organization([kind("bup", "urn:example:kinds")]), "required", id="system"),
        pytest.param(organization([kind("bup"), kind("bupa")]), "required", id="two-in-one"),
        pytest.param(organization([kind("bup")], [kind("bup")]), "required", id="twice"),
        pytest.param(organization([kind("sykehus")]), "code-invalid", id="unknown"),
        pytest.param(organization([kind("BUP")]), "code-invalid", id="case-sensitive"),
        pytest.param(organization([{"system": ORGANISATION_KIND_SYSTEM}]), "code-invalid", id="0"),
    ],
)
def test_check_organisation_kind_rejects(resource: Json, code: str) -> None:
    with pytest.raises(FhirError) as caught:
        check_organisation_kind(resource)
    assert caught.value.status == 422
    assert [(i.code, i.expression) for i in caught.value.issues] == [(code, ("Organization.type",))]


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        (None, False),
        (organization([kind("barneverninstitusjon")]), True),
        (organization([kind("barnevernstjeneste")]), False),
        (organization([kind("barneverninstitusjon", "urn:example")]), False),
    ],
)
def test_is_institution(resource: Json | None, expected: bool) -> None:
    assert is_institution(resource) is expected


# --- municipalities ------------------------------------------------------------------------


def address(*codes: str, url: str = MUNICIPALITY_EXTENSION) -> Json:
    return {
        "city": "Oslo",
        "extension": [
            {"url": url, "valueCoding": {"system": KOMMUNENUMMER_SYSTEM, "code": code}}
            for code in codes
        ],
    }


@pytest.mark.parametrize(
    ("addresses", "expected"),
    [
        pytest.param([], [], id="none"),
        pytest.param([{"city": "Oslo"}], [], id="no-extension"),
        pytest.param([address("0301")], [(0, "0301")], id="one"),
        pytest.param([{"city": "Bergen"}, address("4601")], [(1, "4601")], id="indexed"),
        pytest.param([address("0301", "3201")], [(0, "0301"), (0, "3201")], id="two-in-one"),
        pytest.param([address("0301", url="urn:example:ext")], [], id="other-extension"),
        pytest.param(
            [{"extension": [{"url": MUNICIPALITY_EXTENSION, "valueCoding": {}}]}], [], id="no-code"
        ),
    ],
)
def test_municipality_codes(addresses: list[Json], expected: list[tuple[int, str]]) -> None:
    assert municipality_codes({"resourceType": "Organization", "address": addresses}) == expected


@pytest.mark.parametrize(
    ("addresses", "expressions"),
    [
        pytest.param([address("0301"), address("5001")], [], id="valid"),
        pytest.param([address("301")], ["Organization.address[0].extension"], id="3-digits"),
        pytest.param([address("03011")], ["Organization.address[0].extension"], id="5-digits"),
        pytest.param([address("03a1")], ["Organization.address[0].extension"], id="letter"),
        pytest.param(
            [address("0301"), address("")], ["Organization.address[1].extension"], id="empty"
        ),
        pytest.param(
            [address("1"), address("0301"), address("x")],
            ["Organization.address[0].extension", "Organization.address[2].extension"],
            id="all-reported",
        ),
        pytest.param([address("301", url="urn:example:ext")], [], id="other-extension"),
    ],
)
def test_check_municipalities(addresses: list[Json], expressions: list[str]) -> None:
    resource = organization([kind("bup")], addresses=addresses)
    if not expressions:
        check_municipalities(resource)
        return
    with pytest.raises(FhirError) as caught:
        check_municipalities(resource)
    assert caught.value.status == 422
    assert issue_expressions(caught.value) == [(e,) for e in expressions]
    assert {i.code for i in caught.value.issues} == {"value"}


# --- business keys -------------------------------------------------------------------------


def test_orgnr_and_hpr_keys() -> None:
    resource = {
        "identifier": [
            ident(ORGNR_SYSTEM, ORGNR),
            ident(HPR_SYSTEM, HPR),
            {"system": ORGNR_SYSTEM},
            ident("urn:example", "1"),
        ]
    }
    assert organisation_keys(resource) == [("organisasjonsnummer", ORGNR)]
    assert hpr_keys(resource) == [("hpr-nummer", HPR)]
    assert organisation_keys({}) == []


def test_patient_unique_keys_are_system_qualified() -> None:
    definition = PatientDefinition(enforce_orgnr_check_digit=True)
    patient = {
        "resourceType": "Patient",
        "identifier": [ident(FNR_SYSTEM, FNR), ident(DNR_SYSTEM, DNR), ident("urn:x", "1")],
    }
    assert sorted(definition.unique_keys(patient)) == [
        ("person-number", f"{FNR_SYSTEM}|{FNR}"),
        ("person-number", f"{DNR_SYSTEM}|{DNR}"),
    ]


# --- roles ---------------------------------------------------------------------------------

ALL_ROLES = [
    "koordinator",
    "barnekoordinator",
    "forlopskoordinator-kommune",
    "forlopskoordinator-bup",
    "helseansvarlig",
    "regionalt-helseansvarlig",
    "barnevernansvarlig",
    "kontaktlege",
    "fastlege",
    "behandler",
    "hovedkontakt",
    "tillitsperson",
    "saksbehandler",
    "forelder",
    "pasient",
]


def role(*codings: Json) -> Json:
    return {"resourceType": "PractitionerRole", "code": [{"coding": [c]} for c in codings]}


@pytest.mark.parametrize("code", ALL_ROLES)
def test_check_roles_accepts_every_domain_role(code: str) -> None:
    check_roles(role({"system": ROLE_SYSTEM, "code": code}))


def test_check_roles_ignores_other_systems_and_missing_code() -> None:
    check_roles(role({"system": "urn:example", "code": "lege"}))
    check_roles({"resourceType": "PractitionerRole"})


@pytest.mark.parametrize(
    ("codes", "unknown"),
    [
        (["lege"], "['lege']"),
        (["koordinator", "sjef", "assistent"], "['assistent', 'sjef']"),
        (["Koordinator"], "['Koordinator']"),
    ],
)
def test_check_roles_rejects_unknown(codes: list[str], unknown: str) -> None:
    with pytest.raises(FhirError) as caught:
        check_roles(role(*({"system": ROLE_SYSTEM, "code": c} for c in codes)))
    assert caught.value.status == 422
    [issue] = caught.value.issues
    assert (issue.code, issue.expression) == ("code-invalid", ("PractitionerRole.code",))
    assert issue.diagnostics.startswith(f"Unknown role code(s) {unknown}")


# --- events derived by the resource definitions --------------------------------------------


def change(resource_type: str, before: Json | None, after: Json | None, version: int = 1) -> Change:
    return Change(resource_type, "x1", version, before, after)


def event_names(specs: list[Any]) -> list[tuple[str, Json]]:
    return [(spec.name, spec.data) for spec in specs]


def test_patient_events() -> None:
    definition = PatientDefinition(enforce_orgnr_check_digit=True)
    assert event_names(definition.events(change("Patient", None, patient_with()))) == [
        ("created", {})
    ]
    assert event_names(
        definition.events(change("Patient", patient_with(), patient_with(ACTIVE)))
    ) == [
        ("updated", {}),
        ("care-order-started", {"organization": BVT, "start": "2024-01-15", "end": None}),
    ]
    assert event_names(definition.events(change("Patient", patient_with(ACTIVE), None))) == [
        ("deleted", {}),
        ("care-order-ended", {"organization": BVT, "start": "2024-01-15", "end": None}),
    ]
    assert definition.patient_of(patient_with(), "p-7") == "p-7"


def test_related_person_events() -> None:
    definition = RelatedPersonDefinition(enforce_orgnr_check_digit=True)
    felles = related_person(pr("felles"))
    assert event_names(definition.events(change("RelatedPerson", None, felles))) == [
        ("created", {}),
        ("parental-responsibility-changed", {"before": [], "after": ["felles"]}),
    ]
    assert event_names(definition.events(change("RelatedPerson", felles, felles))) == [
        ("updated", {})
    ]
    assert event_names(
        definition.events(change("RelatedPerson", None, related_person(MOTHER)))
    ) == [("created", {})]
    assert event_names(
        definition.events(change("RelatedPerson", felles, related_person(pr("mor"))))
    ) == [
        ("updated", {}),
        ("parental-responsibility-changed", {"before": ["felles"], "after": ["mor"]}),
    ]
    assert definition.patient_of(felles, "rp-1") == "p1"
    assert definition.patient_of(related_person(), "rp-1") == "p1"
    assert definition.patient_of({"patient": {"reference": "Group/g"}}, "rp-1") is None


def test_organization_events() -> None:
    definition = OrganizationDefinition(enforce_orgnr_check_digit=True)
    institution = organization([kind("barneverninstitusjon")], addresses=[address("0301")])
    bvt = organization([kind("barnevernstjeneste")], addresses=[address("0301")])
    assert event_names(definition.events(change("Organization", None, institution))) == [
        ("created", {}),
        ("institution-registered", {"municipalities": ["0301"]}),
    ]
    assert event_names(definition.events(change("Organization", institution, institution))) == [
        ("updated", {})
    ]
    assert event_names(definition.events(change("Organization", bvt, institution))) == [
        ("updated", {}),
        ("institution-registered", {"municipalities": ["0301"]}),
    ]
    assert event_names(definition.events(change("Organization", None, bvt))) == [("created", {})]
    assert definition.patient_of(bvt, "o1") is None


# --- prepare hooks (the rules a write runs, in order) --------------------------------------

CALLER = Caller(orgnr="974760673", org_kind="bup", scopes=["system/*.cruds"])


@pytest.mark.parametrize(("enforce", "accepted"), [(True, False), (False, True)])
def test_organization_prepare_honours_orgnr_enforcement(enforce: bool, accepted: bool) -> None:
    definition = OrganizationDefinition(enforce_orgnr_check_digit=enforce)
    resource = organization([kind("bup")], addresses=[address("0301")])
    resource["identifier"] = [ident(ORGNR_SYSTEM, ORGNR_BAD_CHECK_DIGIT)]
    if accepted:
        assert definition.prepare(resource, CALLER) == []
    else:
        with pytest.raises(FhirError) as caught:
            definition.prepare(resource, CALLER)
        assert issue_expressions(caught.value) == [("Organization.identifier[0].value",)]


def test_patient_prepare_derives_birth_date_and_checks_care_orders() -> None:
    definition = PatientDefinition(enforce_orgnr_check_digit=True)
    resource = patient_with(ACTIVE)
    resource["identifier"] = [ident(FNR_SYSTEM, FNR)]
    assert definition.prepare(resource, CALLER) == []
    assert resource["birthDate"] == "2005-03-21"
    resource["contact"] = [care_order(BVT, None)]
    with pytest.raises(FhirError) as caught:
        definition.prepare(resource, CALLER)
    assert issue_expressions(caught.value) == [("Patient.contact[0].period.start",)]


def test_related_person_prepare_checks_identifiers_then_responsibility() -> None:
    definition = RelatedPersonDefinition(enforce_orgnr_check_digit=True)
    resource = related_person(pr("bestemor"))
    resource["identifier"] = [ident(FNR_SYSTEM, INVALID_FNR)]
    with pytest.raises(FhirError) as caught:
        definition.prepare(resource, CALLER)
    assert issue_expressions(caught.value) == [("RelatedPerson.identifier[0].value",)]
    resource["identifier"] = [ident(FNR_SYSTEM, FNR_1965)]
    with pytest.raises(FhirError) as caught:
        definition.prepare(resource, CALLER)
    assert issue_expressions(caught.value) == [("RelatedPerson.relationship",)]
    assert "birthDate" not in resource
