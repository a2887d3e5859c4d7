"""Rules for people in the directory: identifiers, birth dates, care orders and
parental responsibility.

These are what the consent service later reads to decide who may consent for a child, so
they are checked strictly here: a wrong fødselsnummer links a child's data to the wrong
person, a birth date that contradicts the number makes every age rule unreliable.
"""

from __future__ import annotations

from typing import Any

import orjson

from shared.codes import CARE_ORDER_CODE, CONTACT_RELATIONSHIP_SYSTEM, PARENTAL_RESPONSIBILITY_CODES
from shared.family import CareOrder, care_orders, is_care_order, parental_responsibility
from shared.fhir.search_params import date_bounds
from shared.identifiers import (
    PERSON_SYSTEMS,
    InvalidIdentifier,
    PersonNumber,
    PersonNumberKind,
    is_person_number,
    lookalike_system,
    validate_identifier,
)
from shared.rules import Problem


def identifier_problems(
    resource: dict[str, Any], *, enforce_orgnr_check_digit: bool = True
) -> list[Problem]:
    """What is wrong with the identifiers under Norwegian systems (and with person
    numbers under any other system)."""
    return _read_identifiers(resource, enforce_orgnr_check_digit)[1]


def person_numbers(resource: dict[str, Any]) -> list[PersonNumber]:
    """The valid person numbers among a resource's identifiers."""
    return _read_identifiers(resource, True)[0]


def _read_identifiers(
    resource: dict[str, Any], enforce_orgnr_check_digit: bool
) -> tuple[list[PersonNumber], list[Problem]]:
    resource_type = resource.get("resourceType", "Resource")
    problems: list[Problem] = []
    numbers: list[PersonNumber] = []
    for index, identifier in enumerate(resource.get("identifier") or []):
        system, value = identifier.get("system"), identifier.get("value")
        if not isinstance(value, str):
            continue
        if system not in PERSON_SYSTEMS and is_person_number(value):
            problems.append(
                Problem(
                    422,
                    "value",
                    f"{value} is a person number: it is written under its own system"
                    f" ({', '.join(sorted(PERSON_SYSTEMS))}), or it escapes the rule of one"
                    " record per person",
                    f"{resource_type}.identifier[{index}].system",
                )
            )
            continue
        if not isinstance(system, str):
            continue
        exact = lookalike_system(system)
        if exact is not None:
            problems.append(
                Problem(
                    422,
                    "value",
                    f"Identifier system {system!r} is written {exact}",
                    f"{resource_type}.identifier[{index}].system",
                )
            )
            continue
        try:
            number = validate_identifier(
                system, value, enforce_orgnr_check_digit=enforce_orgnr_check_digit
            )
        except InvalidIdentifier as exc:
            problems.append(
                Problem(
                    422,
                    "value",
                    f"Invalid identifier {value} ({system}): {exc.reason}",
                    f"{resource_type}.identifier[{index}].value",
                )
            )
            continue
        if number is not None:
            numbers.append(number)
    return numbers, problems


def reconcile_birth_date(patient: dict[str, Any], numbers: list[PersonNumber]) -> list[Problem]:
    """Fill in or check Patient.birthDate against a number whose date is reliable.

    Only a classic-rule fødselsnummer (or synthetic number) carries a reliable birth date;
    a D-nummer, an H-nummer or a number under the 2032 rule never sets or contradicts it.
    """
    for number in numbers:
        if number.birth_date is None:
            continue
        derived = number.birth_date.isoformat()
        given = patient.get("birthDate")
        if given is None:
            patient["birthDate"] = derived
        elif given != derived and not derived.startswith(given):
            return [
                Problem(
                    422,
                    "business-rule",
                    f"birthDate {given} contradicts fødselsnummer {number.value},"
                    f" which gives {derived}",
                    "Patient.birthDate",
                )
            ]
    return []


def unconfirmed_birth_date(patient: dict[str, Any], numbers: list[PersonNumber]) -> list[Problem]:
    """A client registering a child states a birth date only as its fødselsnummer gives it:
    the date decides who may consent for the child, and a D-nummer's, an H-nummer's or a
    hjelpenummer's says nothing reliable about it. Otherwise the population register states
    it; until then the child has none, and the age rules wait for it."""
    born = patient.get("birthDate")
    confirmed = any(n.birth_date and n.birth_date.isoformat() == born for n in numbers)
    if confirmed or (born is None and "_birthDate" not in patient):
        return []
    return [
        Problem(
            422,
            "business-rule",
            "A birth date that no fødselsnummer gives is stated only by the population"
            " register: leave Patient.birthDate out",
            "Patient.birthDate",
        )
    ]


def person_keys(numbers: list[PersonNumber], system_of: dict[str, str]) -> list[tuple[str, str]]:
    """Unique business keys: one Patient per fødselsnummer, D-nummer or hjelpenummer."""
    return [("person-number", f"{system_of[n.value]}|{n.value}") for n in numbers]


def person_number_systems(resource: dict[str, Any]) -> dict[str, str]:
    return {
        i["value"]: i["system"]
        for i in resource.get("identifier") or []
        if i.get("system") in PERSON_SYSTEMS and isinstance(i.get("value"), str)
    }


def is_d_number(number: PersonNumber) -> bool:
    return number.kind is PersonNumberKind.D_NUMMER


def _lookalike(coding: Any) -> bool:
    """A relationship coding that resembles the care-order code without being it."""
    if not isinstance(coding, dict):
        return False
    system, code = str(coding.get("system") or ""), str(coding.get("code") or "")
    if system == CONTACT_RELATIONSHIP_SYSTEM and code == CARE_ORDER_CODE:
        return False
    respelled = system != CONTACT_RELATIONSHIP_SYSTEM and (
        system.strip().rstrip("/").casefold() == CONTACT_RELATIONSHIP_SYSTEM.casefold()
    )
    return code.strip().casefold() == CARE_ORDER_CODE or respelled


def care_order_problems(patient: dict[str, Any]) -> list[Problem]:
    """A care order names the barnevernstjeneste holding it and when it started; nothing
    that merely resembles one (another spelling of its code or system) is recorded."""
    problems = []
    for index, contact in enumerate(patient.get("contact") or []):
        codings = [c for r in contact.get("relationship") or [] for c in r.get("coding") or []]
        if any(_lookalike(coding) for coding in codings):
            problems.append(
                Problem(
                    422,
                    "code-invalid",
                    f"A contact relationship from {CONTACT_RELATIONSHIP_SYSTEM} is exactly"
                    f" {CARE_ORDER_CODE}; other spellings are not recorded",
                    f"Patient.contact[{index}].relationship",
                )
            )
        if not is_care_order(contact):
            continue
        where = f"Patient.contact[{index}]"
        if not (contact.get("organization") or {}).get("reference"):
            problems.append(
                Problem(
                    422,
                    "required",
                    "A care order must name the barnevernstjeneste holding it"
                    " (contact.organization.reference)",
                    f"{where}.organization",
                )
            )
        period = contact.get("period") or {}
        if not period.get("start"):
            problems.append(
                Problem(
                    422,
                    "required",
                    "A care order must have a start date (contact.period.start)",
                    f"{where}.period.start",
                )
            )
        elif period.get("end") and date_bounds(period["end"])[1] < date_bounds(period["start"])[0]:
            problems.append(
                Problem(
                    422,
                    "business-rule",
                    "A care order cannot end before it starts",
                    f"{where}.period",
                )
            )
    return problems


def care_order_changes(
    before: dict[str, Any] | None, after: dict[str, Any] | None
) -> list[tuple[str, CareOrder]]:
    """Care orders that started or ended between two versions of a Patient."""
    old = {(o.organization, o.start): o for o in care_orders(before)}
    new = {(o.organization, o.start): o for o in care_orders(after)}
    changes: list[tuple[str, CareOrder]] = []
    for key, order in new.items():
        previous = old.get(key)
        if order.end is None and (previous is None or previous.end is not None):
            changes.append(("care-order-started", order))
        elif order.end is not None and (previous is None or previous.end is None):
            changes.append(("care-order-ended", order))
    changes.extend(
        ("care-order-ended", o) for key, o in old.items() if key not in new and o.end is None
    )
    return changes


def parental_responsibility_problems(related_person: dict[str, Any]) -> list[Problem]:
    unknown = set(parental_responsibility(related_person)) - PARENTAL_RESPONSIBILITY_CODES
    if not unknown:
        return []
    return [
        Problem(
            422,
            "code-invalid",
            f"Unknown parental-responsibility code(s) {sorted(unknown)}; expected one of"
            f" {sorted(PARENTAL_RESPONSIBILITY_CODES)}",
            "RelatedPerson.relationship",
        )
    ]


def unnamed_holder_problems(related_person: dict[str, Any]) -> list[Problem]:
    """A holder of parental responsibility is named by a person number: the population
    register knows it, and one record per person and child is kept by that number
    (`related-person` key). Without one, a second record of the same parent would count
    as a second holder."""
    if not parental_responsibility(related_person) or person_number_systems(related_person):
        return []
    return [
        Problem(
            422,
            "business-rule",
            "A RelatedPerson holding parental responsibility names the holder by person"
            " number (fødselsnummer, D-nummer or felles hjelpenummer) in identifier",
            "RelatedPerson.identifier",
        )
    ]


REGISTER_ELEMENTS = ("_birthDate", "deceasedBoolean", "deceasedDateTime", "link")
"""Facts of the population register besides the numbers and the birth date: the birth
date's extensions (a time of birth), whether the person has died, and which records are
the same person."""


def _person_numbers(resource: dict[str, Any]) -> list[str]:
    return sorted(
        orjson.dumps(i, option=orjson.OPT_SORT_KEYS).decode()
        for i in resource.get("identifier") or []
        if isinstance(i, dict) and i.get("system") in PERSON_SYSTEMS
    )


def person_fact_changes(before: dict[str, Any], after: dict[str, Any]) -> list[Problem]:
    """What an update by a client may not do to who a person is: add, drop or change a
    person number (fødselsnummer, D-nummer, hjelpenummer), or set or change the birth date;
    both decide who the child is and who may consent for it, and after registration only
    the population register states them. A birth date left out is kept as it was."""
    problems = []
    if _person_numbers(after) != _person_numbers(before):
        problems.append(
            Problem(
                422,
                "business-rule",
                "A person number is never added, removed or changed (nor its use or period)"
                " by a client after registration: the population register states who a"
                " person is",
                "Patient.identifier",
            )
        )
    for element in REGISTER_ELEMENTS:
        if after.get(element) != before.get(element):
            problems.append(
                Problem(
                    422,
                    "business-rule",
                    f"Patient.{element} is stated only by the population register",
                    f"Patient.{element}",
                )
            )
    born = before.get("birthDate")
    if born is not None:
        after.setdefault("birthDate", born)
    if after.get("birthDate") != born:
        problems.append(
            Problem(
                422,
                "business-rule",
                "A birth date is set or changed only by the population register after"
                " registration: it decides who may consent for the child",
                "Patient.birthDate",
            )
        )
    return problems
