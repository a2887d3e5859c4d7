"""The resource types the directory owns, with their search parameters, keys and events.

Patient, RelatedPerson, Organization, Practitioner, PractitionerRole and HealthcareService
follow the HL7 Norway no-basis profiles. Care orders are recorded on the Patient as a
`Patient.contact` with relationship `omsorgsovertakelse` (project CodeSystem), the
barnevernstjeneste as `contact.organization` and the period; parental responsibility is a
RelatedPerson with a no-basis parental-responsibility relationship code.
"""

from __future__ import annotations

from typing import Any

from services.directory.domain import organisations, people
from shared.codes import (
    CARE_ORDER_CODE,
    CONTACT_RELATIONSHIP_SYSTEM,
    MUNICIPALITY_EXTENSION,
    OrganisationKind,
    organisation_kinds,
)
from shared.family import indexed_care_orders, parental_responsibility
from shared.fhir.definitions import Change, EventSpec, Lookup, ResourceDefinition
from shared.fhir.errors import FhirError, Issue, error
from shared.fhir.references import reference_target
from shared.fhir.search_params import ParamType, SearchParam, extension_values, walk
from shared.transport.wire import Caller

TOKEN, STRING, REFERENCE, DATE = (
    ParamType.TOKEN,
    ParamType.STRING,
    ParamType.REFERENCE,
    ParamType.DATE,
)


def _identifier() -> SearchParam:
    return SearchParam("identifier", TOKEN, ("identifier",), "Business identifier (system|value)")


def _active() -> SearchParam:
    return SearchParam("active", TOKEN, ("active",), "Whether the record is in active use")


def local_reference(reference: Any, resource_type: str) -> tuple[str, str] | None:
    """(type, id) of a relative reference `Type/id` to this server; None for anything else
    (absolute URLs may name another server's resource with the same id)."""
    if not isinstance(reference, str) or "://" in reference:
        return None
    target = reference_target(reference)
    return target if target and target[0] == resource_type and reference.count("/") == 1 else None


def _care_order_organizations(patient: dict[str, Any]) -> list[Any]:
    return [
        contact.get("organization")
        for contact in patient.get("contact") or []
        if any(
            coding.get("system") == CONTACT_RELATIONSHIP_SYSTEM
            and coding.get("code") == CARE_ORDER_CODE
            for coding in walk(contact, ["relationship", "coding"])
        )
    ]


class _Directory(ResourceDefinition):
    """Identifier and kommunenummer validation shared by every directory type."""

    def __init__(self, *, enforce_orgnr_check_digit: bool) -> None:
        self.enforce_orgnr_check_digit = enforce_orgnr_check_digit

    def prepare(self, resource: dict[str, Any], caller: Caller) -> list[Issue]:
        people.check_identifiers(resource, enforce_orgnr_check_digit=self.enforce_orgnr_check_digit)
        organisations.check_municipalities(resource)
        return []


class PatientDefinition(_Directory):
    resource_type = "Patient"
    documentation = "The child (or adult) receiving care; no-basis-Patient"
    search_params = (
        _identifier(),
        _active(),
        SearchParam("name", STRING, ("name",), "Any part of the name"),
        SearchParam("family", STRING, ("name.family",), "Family name"),
        SearchParam("given", STRING, ("name.given",), "Given name"),
        SearchParam("birthdate", DATE, ("birthDate",), "Date of birth"),
        SearchParam("gender", TOKEN, ("gender",), "Administrative gender"),
        SearchParam(
            "general-practitioner",
            REFERENCE,
            ("generalPractitioner",),
            "The fastlege (Practitioner, PractitionerRole or Organization)",
            targets=("Practitioner", "PractitionerRole", "Organization"),
        ),
        SearchParam(
            "organization",
            REFERENCE,
            ("managingOrganization",),
            "Managing organisation",
            targets=("Organization",),
        ),
        SearchParam(
            "care-order-organization",
            REFERENCE,
            documentation="The barnevernstjeneste that holds (or held) a care order for the child",
            targets=("Organization",),
            extract=_care_order_organizations,
        ),
    )

    def prepare(self, resource: dict[str, Any], caller: Caller) -> list[Issue]:
        numbers = people.check_identifiers(
            resource, enforce_orgnr_check_digit=self.enforce_orgnr_check_digit
        )
        organisations.check_municipalities(resource)
        people.reconcile_birth_date(resource, numbers)
        people.check_care_orders(resource)
        return []

    async def verify_references(self, resource: dict[str, Any], lookup: Lookup) -> None:
        """A care order must name a registered barnevernstjeneste: it decides who may
        consent for the child."""
        problems = []
        for index, order in indexed_care_orders(resource):
            target = local_reference(order.organization, "Organization")
            holder = await lookup(*target) if target else None
            if holder is None or organisation_kinds(holder) != [
                OrganisationKind.BARNEVERNSTJENESTE.value
            ]:
                problems.append(
                    Issue(
                        "business-rule",
                        f"A care order must name a registered barnevernstjeneste;"
                        f" {order.organization} is not one",
                        expression=(f"Patient.contact[{index}].organization",),
                    )
                )
        if problems:
            raise FhirError(422, problems)

    def unique_keys(self, resource: dict[str, Any]) -> list[tuple[str, str]]:
        systems = people.person_number_systems(resource)
        return [("person-number", f"{system}|{value}") for value, system in systems.items()]

    def patient_of(self, resource: dict[str, Any], resource_id: str) -> str | None:
        return resource_id

    def events(self, change: Change) -> list[EventSpec]:
        events = [EventSpec(change.kind, {})]
        events += [
            EventSpec(name, order.as_data())
            for name, order in people.care_order_changes(change.before, change.after)
        ]
        return events


class RelatedPersonDefinition(_Directory):
    resource_type = "RelatedPerson"
    documentation = "A parent or other person related to the patient; no-basis-RelatedPerson"
    search_params = (
        _identifier(),
        _active(),
        SearchParam("patient", REFERENCE, ("patient",), "The patient", targets=("Patient",)),
        SearchParam(
            "relationship",
            TOKEN,
            ("relationship",),
            "Relationship, including parental responsibility",
        ),
        SearchParam("name", STRING, ("name",), "Any part of the name"),
    )

    def prepare(self, resource: dict[str, Any], caller: Caller) -> list[Issue]:
        super().prepare(resource, caller)
        people.check_parental_responsibility(resource)
        return []

    async def verify_references(self, resource: dict[str, Any], lookup: Lookup) -> None:
        """Parental responsibility is read for one child: the Patient must be registered
        here (a relative reference)."""
        reference = (resource.get("patient") or {}).get("reference")
        target = local_reference(reference, "Patient")
        if target is None or await lookup(*target) is None:
            raise error(
                422,
                "business-rule",
                f"RelatedPerson.patient must reference a registered Patient as Patient/<id>;"
                f" {reference!r} is not one",
                "RelatedPerson.patient",
            )

    def patient_of(self, resource: dict[str, Any], resource_id: str) -> str | None:
        target = reference_target(resource.get("patient"))
        return target[1] if target and target[0] == "Patient" else None

    def events(self, change: Change) -> list[EventSpec]:
        events = [EventSpec(change.kind, {})]
        before = parental_responsibility(change.before)
        after = parental_responsibility(change.after)
        if before != after:
            events.append(
                EventSpec("parental-responsibility-changed", {"before": before, "after": after})
            )
        return events


class OrganizationDefinition(_Directory):
    resource_type = "Organization"
    documentation = "An organisation with its kind and kommunenummer; no-basis-Organization"
    search_params = (
        _identifier(),
        _active(),
        SearchParam("name", STRING, ("name", "alias"), "Name or alias"),
        SearchParam("type", TOKEN, ("type",), "Organisation kind (project CodeSystem)"),
        SearchParam(
            "partof", REFERENCE, ("partOf",), "Parent organisation", targets=("Organization",)
        ),
        SearchParam(
            "municipality",
            TOKEN,
            documentation="Kommunenummer of an address (no-basis municipality extension)",
            extract=extension_values(MUNICIPALITY_EXTENSION, "valueCoding", "address"),
        ),
    )

    def prepare(self, resource: dict[str, Any], caller: Caller) -> list[Issue]:
        super().prepare(resource, caller)
        organisations.check_organisation_kind(resource)
        organisations.check_institution_location(resource)
        return []

    def unique_keys(self, resource: dict[str, Any]) -> list[tuple[str, str]]:
        return organisations.orgnr_keys(resource)

    def events(self, change: Change) -> list[EventSpec]:
        events = [EventSpec(change.kind, {})]
        if organisations.is_institution(change.after) and not organisations.is_institution(
            change.before
        ):
            municipalities = [
                code for _, code in organisations.municipality_codes(change.after or {})
            ]
            events.append(EventSpec("institution-registered", {"municipalities": municipalities}))
        return events


class PractitionerDefinition(_Directory):
    resource_type = "Practitioner"
    documentation = "Health personnel and others who take part in care; no-basis-Practitioner"
    search_params = (
        _identifier(),
        _active(),
        SearchParam("name", STRING, ("name",), "Any part of the name"),
        SearchParam("family", STRING, ("name.family",), "Family name"),
        SearchParam("given", STRING, ("name.given",), "Given name"),
    )

    def unique_keys(self, resource: dict[str, Any]) -> list[tuple[str, str]]:
        return organisations.hpr_keys(resource)


class PractitionerRoleDefinition(_Directory):
    resource_type = "PractitionerRole"
    documentation = "A practitioner's role at an organisation (project role codes)"
    search_params = (
        _identifier(),
        _active(),
        SearchParam(
            "practitioner",
            REFERENCE,
            ("practitioner",),
            "The practitioner",
            targets=("Practitioner",),
        ),
        SearchParam(
            "organization",
            REFERENCE,
            ("organization",),
            "The organisation",
            targets=("Organization",),
        ),
        SearchParam("role", TOKEN, ("code",), "Role (project CodeSystem care-role)"),
        SearchParam(
            "service",
            REFERENCE,
            ("healthcareService",),
            "Services provided in this role",
            targets=("HealthcareService",),
        ),
    )

    def prepare(self, resource: dict[str, Any], caller: Caller) -> list[Issue]:
        super().prepare(resource, caller)
        organisations.check_roles(resource)
        return []


class HealthcareServiceDefinition(_Directory):
    resource_type = "HealthcareService"
    documentation = "A service an organisation provides (e.g. a municipal follow-up team)"
    search_params = (
        _identifier(),
        _active(),
        SearchParam(
            "organization",
            REFERENCE,
            ("providedBy",),
            "The organisation providing the service",
            targets=("Organization",),
        ),
        SearchParam("name", STRING, ("name",), "Name of the service"),
        SearchParam("service-type", TOKEN, ("type",), "Type of service"),
    )


def directory_definitions(*, enforce_orgnr_check_digit: bool) -> list[ResourceDefinition]:
    kinds: list[type[_Directory]] = [
        PatientDefinition,
        RelatedPersonDefinition,
        OrganizationDefinition,
        PractitionerDefinition,
        PractitionerRoleDefinition,
        HealthcareServiceDefinition,
    ]
    return [kind(enforce_orgnr_check_digit=enforce_orgnr_check_digit) for kind in kinds]
