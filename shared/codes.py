"""The project's own code systems and the Norwegian ones every service refers to.

Organisation kinds (DOMAIN §2) are used in tokens, in `Organization.type` and in access
rules; the care-order relationship marks a barnevernstjeneste that has taken over care.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

CODE_SYSTEM_BASE = "https://fhir.barnebro.no/CodeSystem"
ORGANISATION_KIND_SYSTEM = f"{CODE_SYSTEM_BASE}/organisation-kind"
CONTACT_RELATIONSHIP_SYSTEM = f"{CODE_SYSTEM_BASE}/contact-relationship"
CARE_ORDER_CODE = "omsorgsovertakelse"
PARENTAL_RESPONSIBILITY_SYSTEM = "http://hl7.no/fhir/CodeSystem/no-basis-parental-responsibility"
PARENTAL_RESPONSIBILITY_CODES = frozenset({"felles", "mor", "far", "medmor", "andre", "ukjent"})
MUNICIPALITY_EXTENSION = "http://hl7.no/fhir/StructureDefinition/no-basis-municipalitycode"
NO_BASIS_PROFILE = "http://hl7.no/fhir/StructureDefinition/no-basis-{}"


class OrganisationKind(StrEnum):
    """Kinds of organisation taking part in a child's care (DOMAIN §2)."""

    FASTLEGE = "fastlege"
    BUP = "bup"
    BUPA = "bupa"
    DPS = "dps"
    BARNEVERNSTJENESTE = "barnevernstjeneste"
    BARNEVERNINSTITUSJON = "barneverninstitusjon"
    BUFETAT = "bufetat"
    KOMMUNE_HELSE = "kommune-helse"
    LEGEVAKT = "legevakt"
    SKOLE = "skole"
    BARNEHAGE = "barnehage"
    PPT = "ppt"
    NAV = "nav"


ORGANISATION_KINDS = frozenset(kind.value for kind in OrganisationKind)


def organisation_kinds(organization: dict[str, Any] | None) -> list[str]:
    """The kind codes on an Organization's `type` (normally exactly one)."""
    return [
        coding.get("code", "")
        for concept in (organization or {}).get("type") or []
        for coding in concept.get("coding") or []
        if coding.get("system") == ORGANISATION_KIND_SYSTEM
    ]


ROLE_SYSTEM = f"{CODE_SYSTEM_BASE}/care-role"
ROLES = frozenset(
    {
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
    }
)
"""Roles of people in a child's care (DOMAIN §2)."""


HEALTH_KINDS = frozenset(
    {
        OrganisationKind.FASTLEGE,
        OrganisationKind.BUP,
        OrganisationKind.BUPA,
        OrganisationKind.DPS,
        OrganisationKind.KOMMUNE_HELSE,
        OrganisationKind.LEGEVAKT,
    }
)
"""Kinds whose staff are health personnel (helsepersonelloven): only they may use the
emergency basis (øyeblikkelig hjelp) or report under hpl §33."""


class DataCategory(StrEnum):
    """Categories of a child's information that consents name (project CodeSystem
    data-category): consents cover categories, not resource types."""

    REFERRAL = "referral"
    CAREPLAN = "careplan"
    INDIVIDUELL_PLAN = "individuell-plan"
    """an individual plan and its goals: released only under a consent naming this
    category, so a consent for other plans or the care team never opens it"""
    CARETEAM = "careteam"
    CONSENT = "consent"
    ENCOUNTER_SUMMARY = "encounter-summary"
    JOURNAL = "journal"


PERSON_CATEGORY = "person"
"""The access category of the directory's records of a child and its parents (Patient,
RelatedPerson): released to those with a relation to the child, never by a consent to a
data category (consents cannot name it)."""
AUDIT_CATEGORY = "audit"
"""The access category of the audit trail: an organisation sees the records of its own
accesses; no consent releases them."""

DATA_CATEGORY_SYSTEM = f"{CODE_SYSTEM_BASE}/data-category"
CONSENT_PURPOSE_SYSTEM = f"{CODE_SYSTEM_BASE}/consent-purpose"
LEGAL_BASIS_SYSTEM = f"{CODE_SYSTEM_BASE}/legal-basis"
ACT_REASON_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
DEFAULT_PURPOSE_OF_USE = "TREAT"
EMERGENCY_PURPOSE_OF_USE = "ETREAT"
STRUCTURE_DEFINITION_BASE = "https://fhir.barnebro.no/StructureDefinition"
