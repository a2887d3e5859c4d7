"""Rules for organisations, practitioners and their roles in the directory.

An organisation's kind (DOMAIN §2) decides what it may do later (refer, consent,
coordinate), so every Organization must carry exactly one known kind; roles must come
from the project's role list; kommunenummer must be well formed.
"""

from __future__ import annotations

from typing import Any

from shared.codes import (
    MUNICIPALITY_EXTENSION,
    ORGANISATION_KIND_SYSTEM,
    ORGANISATION_KINDS,
    ROLE_SYSTEM,
    ROLES,
    OrganisationKind,
    organisation_kinds,
)
from shared.fhir.errors import FhirError, Issue, error
from shared.identifiers import (
    HERID_SYSTEM,
    HPR_SYSTEM,
    ORGNR_SYSTEM,
    InvalidIdentifier,
    check_kommunenummer,
)


def check_organisation_kind(organization: dict[str, Any]) -> None:
    kinds = organisation_kinds(organization)
    if len(kinds) != 1:
        raise error(
            422,
            "required",
            f"An Organization needs exactly one type coding from {ORGANISATION_KIND_SYSTEM}"
            f" (one of {', '.join(sorted(ORGANISATION_KINDS))}); found {len(kinds)}",
            "Organization.type",
        )
    if kinds[0] not in ORGANISATION_KINDS:
        raise error(
            422,
            "code-invalid",
            f"Unknown organisation kind {kinds[0]!r}; expected one of"
            f" {', '.join(sorted(ORGANISATION_KINDS))}",
            "Organization.type",
        )


def check_institution_location(organization: dict[str, Any]) -> None:
    """BUP must know every institution in its catchment area: a barneverninstitusjon
    needs a kommunenummer."""
    if is_institution(organization) and not municipality_codes(organization):
        raise error(
            422,
            "required",
            "A barneverninstitusjon needs its kommunenummer (the no-basis municipality"
            " extension on an address)",
            "Organization.address",
        )


def is_institution(organization: dict[str, Any] | None) -> bool:
    return OrganisationKind.BARNEVERNINSTITUSJON.value in organisation_kinds(organization)


def municipality_codes(resource: dict[str, Any]) -> list[tuple[int, str]]:
    """(address index, kommunenummer) from the no-basis municipality extension."""
    found = []
    for index, address in enumerate(resource.get("address") or []):
        for ext in address.get("extension") or []:
            coding = ext.get("valueCoding") or {}
            if ext.get("url") == MUNICIPALITY_EXTENSION and "code" in coding:
                found.append((index, str(coding["code"])))
    return found


def check_municipalities(resource: dict[str, Any]) -> None:
    problems = []
    resource_type = resource.get("resourceType")
    for index, code in municipality_codes(resource):
        try:
            check_kommunenummer(code)
        except InvalidIdentifier as exc:
            problems.append(
                Issue(
                    "value",
                    f"Invalid kommunenummer {code}: {exc.reason}",
                    expression=(f"{resource_type}.address[{index}].extension",),
                )
            )
    if problems:
        raise FhirError(422, problems)


def identifier_keys(resource: dict[str, Any], system: str, key_name: str) -> list[tuple[str, str]]:
    return [
        (key_name, str(i["value"]))
        for i in resource.get("identifier") or []
        if i.get("system") == system and i.get("value")
    ]


def organisation_keys(organization: dict[str, Any]) -> list[tuple[str, str]]:
    """One Organization per organisasjonsnummer, and per HER-id: a referral addressed by
    HER-id must reach exactly one receiver."""
    return identifier_keys(organization, ORGNR_SYSTEM, "organisasjonsnummer") + (
        identifier_keys(organization, HERID_SYSTEM, "her-id"))  # fmt: skip


def hpr_keys(practitioner: dict[str, Any]) -> list[tuple[str, str]]:
    """One Practitioner per HPR-nummer."""
    return identifier_keys(practitioner, HPR_SYSTEM, "hpr-nummer")


def check_roles(role: dict[str, Any]) -> None:
    unknown = sorted(
        coding.get("code", "")
        for concept in role.get("code") or []
        for coding in concept.get("coding") or []
        if coding.get("system") == ROLE_SYSTEM and coding.get("code") not in ROLES
    )
    if unknown:
        raise error(
            422,
            "code-invalid",
            f"Unknown role code(s) {unknown}; expected one of {', '.join(sorted(ROLES))}",
            "PractitionerRole.code",
        )
