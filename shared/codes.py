"""The project's own code systems and the Norwegian ones every service refers to.

Organisation kinds (DOMAIN §2) are used in tokens, in `Organization.type` and in access
rules; the care-order relationship marks a barnevernstjeneste that has taken over care.
Each project code system is a `CodedEnum`: every code is declared with its display and
definition, and the consent service serves them as FHIR CodeSystem resources at their
canonical URLs (`shared.fhir.code_systems`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Self


class CodedEnum(StrEnum):
    """Codes of a code system, each declared as `NAME = code, display, definition`; the
    member is the code (a `str`), with `display` and `definition` beside it."""

    _value_: str
    display: str
    definition: str

    def __new__(cls, code: str, display: str = "", definition: str = "") -> Self:
        member = str.__new__(cls, code)
        member._value_ = code
        member.display = display
        member.definition = definition
        return member


CODE_SYSTEM_BASE = "https://fhir.barnebro.no/CodeSystem"
ORGANISATION_KIND_SYSTEM = f"{CODE_SYSTEM_BASE}/organisation-kind"
CONTACT_RELATIONSHIP_SYSTEM = f"{CODE_SYSTEM_BASE}/contact-relationship"
CARE_ORDER_CODE = "omsorgsovertakelse"
PARENTAL_RESPONSIBILITY_SYSTEM = "http://hl7.no/fhir/CodeSystem/no-basis-parental-responsibility"
PARENTAL_RESPONSIBILITY_CODES = frozenset({"felles", "mor", "far", "medmor", "andre", "ukjent"})
MUNICIPALITY_EXTENSION = "http://hl7.no/fhir/StructureDefinition/no-basis-municipalitycode"
NO_BASIS_PROFILE = "http://hl7.no/fhir/StructureDefinition/no-basis-{}"


class OrganisationKind(CodedEnum):
    """Kinds of organisation taking part in a child's care (DOMAIN §2)."""

    FASTLEGE = "fastlege", "Fastlege", "A general practitioner's practice (the child's GP)"
    BUP = (
        "bup",
        "Barne- og ungdomspsykiatrisk poliklinikk",
        "Child and adolescent mental health outpatient clinic (specialist health service)",
    )
    BUPA = (
        "bupa",
        "Barne- og ungdomspsykiatrisk akuttenhet",
        "Child and adolescent mental health emergency or inpatient unit",
    )
    DPS = "dps", "Distriktspsykiatrisk senter", "District psychiatric centre (adult mental health)"
    BARNEVERNSTJENESTE = (
        "barnevernstjeneste",
        "Barnevernstjeneste",
        "The municipal child welfare service; holds the care order when it has taken over"
        " the child's care",
    )
    BARNEVERNINSTITUSJON = (
        "barneverninstitusjon",
        "Barneverninstitusjon",
        "A child welfare institution where a child in care lives",
    )
    BUFETAT = (
        "bufetat",
        "Bufetat",
        "The state child welfare agency (Barne-, ungdoms- og familieetaten)",
    )
    KOMMUNE_HELSE = (
        "kommune-helse",
        "Kommunal helsetjeneste",
        "The municipality's health services (helsestasjon, skolehelsetjeneste, psychologists)",
    )
    LEGEVAKT = "legevakt", "Legevakt", "The municipal out-of-hours emergency medical service"
    SKOLE = "skole", "Skole", "A school"
    BARNEHAGE = "barnehage", "Barnehage", "A kindergarten"
    PPT = (
        "ppt",
        "Pedagogisk-psykologisk tjeneste",
        "The educational-psychological counselling service of the municipality",
    )
    NAV = "nav", "NAV", "The Norwegian Labour and Welfare Administration"


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


class CareRole(CodedEnum):
    """Roles of people in a child's care (DOMAIN §2), which tokens (`barnebro:roles`),
    consents (as recipients) and care teams name."""

    KOORDINATOR = (
        "koordinator",
        "Koordinator",
        "The coordinator of the child's individual plan (individuell plan)",
    )
    BARNEKOORDINATOR = (
        "barnekoordinator",
        "Barnekoordinator",
        "The municipal coordinator for families with a child with serious illness or disability",
    )
    FORLOPSKOORDINATOR_KOMMUNE = (
        "forlopskoordinator-kommune",
        "Forløpskoordinator i kommunen",
        "The municipality's coordinator of the national pathway (nasjonalt forløp) for"
        " children in barnevern",
    )
    FORLOPSKOORDINATOR_BUP = (
        "forlopskoordinator-bup",
        "Forløpskoordinator i BUP",
        "The specialist health service's coordinator of the national pathway",
    )
    HELSEANSVARLIG = (
        "helseansvarlig",
        "Helseansvarlig",
        "The person responsible for the health follow-up of a child in a barnevern institution",
    )
    REGIONALT_HELSEANSVARLIG = (
        "regionalt-helseansvarlig",
        "Regionalt helseansvarlig",
        "The regional health authority's contact for children in barnevern",
    )
    BARNEVERNANSVARLIG = (
        "barnevernansvarlig",
        "Barnevernansvarlig",
        "The health service's contact for barnevern",
    )
    KONTAKTLEGE = "kontaktlege", "Kontaktlege", "The child's contact physician in the hospital"
    FASTLEGE = "fastlege", "Fastlege", "The child's general practitioner"
    BEHANDLER = "behandler", "Behandler", "A clinician treating the child"
    HOVEDKONTAKT = "hovedkontakt", "Hovedkontakt", "The child's main contact in a service"
    TILLITSPERSON = (
        "tillitsperson",
        "Tillitsperson",
        "A person the child trusts and has chosen to support it",
    )
    SAKSBEHANDLER = (
        "saksbehandler",
        "Saksbehandler",
        "The case worker handling the child's case (in barnevern)",
    )
    FORELDER = "forelder", "Forelder", "A parent of the child"
    PASIENT = "pasient", "Pasient", "The child itself, as patient"


ROLES = frozenset(role.value for role in CareRole)
"""The codes of `CareRole`."""


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


class DataCategory(CodedEnum):
    """Categories of a child's information that consents name (project CodeSystem
    data-category): consents cover categories, not resource types."""

    REFERRAL = (
        "referral",
        "Henvisning",
        "A referral (ServiceRequest), its workflow (Task) and its attachments",
    )
    CAREPLAN = (
        "careplan",
        "Plan",
        "Plans other than the individual plan (kriseplan, behandlingsplan, forløp plan) and"
        " their goals",
    )
    INDIVIDUELL_PLAN = (
        "individuell-plan",
        "Individuell plan",
        "An individual plan and its goals: released only under a consent naming this"
        " category, so a consent for other plans or the care team never opens it",
    )
    CARETEAM = "careteam", "Ansvarsgruppe", "The child's care team (ansvarsgruppe) and its members"
    CONSENT = "consent", "Samtykke", "The child's consents and refusals"
    ENCOUNTER_SUMMARY = (
        "encounter-summary",
        "Kontaktsammendrag",
        "Summaries of encounters (epikrise, notat om kontakt)",
    )
    JOURNAL = "journal", "Journal", "Notes and documents from the health or barnevern record"


PERSON_CATEGORY = "person"
"""The access category of the directory's records of a child and its parents (Patient,
RelatedPerson): released to those with a relation to the child, never by a consent to a
data category (consents cannot name it)."""
AUDIT_CATEGORY = "audit"
"""The access category of the audit trail: an organisation sees the records of its own
accesses; no consent releases them."""

DATA_CATEGORY_SYSTEM = f"{CODE_SYSTEM_BASE}/data-category"
CONSENT_PURPOSE_SYSTEM = f"{CODE_SYSTEM_BASE}/consent-purpose"
ACT_REASON_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
DEFAULT_PURPOSE_OF_USE = "TREAT"
EMERGENCY_PURPOSE_OF_USE = "ETREAT"
PURPOSES_OF_USE = frozenset(
    {"COVERAGE", "ETREAT", "HMARKT", "HOPERAT", "HPAYMT", "HRESCH", "PATRQT", "PUBHLTH", "TREAT"}
)
"""The v3-ActReason codes of HL7's GeneralPurposeOfUse value set: what a request may state
as its purpose and a consent may be limited to. Any other code is refused, so the audit
trail records only purposes a reviewer can read."""
STRUCTURE_DEFINITION_BASE = "https://fhir.barnebro.no/StructureDefinition"


class ContactRelationship(CodedEnum):
    """How an organisation named as a Patient's contact stands to the child."""

    OMSORGSOVERTAKELSE = (
        CARE_ORDER_CODE,
        "Omsorgsovertakelse",
        "The barnevernstjeneste has taken over the child's care by a care order"
        " (barnevernsloven §5-1), for the contact's period",
    )
