"""The directory service: people and organisations (Patient, RelatedPerson, Organization,
Practitioner, PractitionerRole, HealthcareService), with Norwegian identifier rules, care
orders and parental responsibility that the consent service reads."""

from __future__ import annotations

from services.directory.resources import directory_definitions
from shared.config import Settings
from shared.runtime import ServiceSpec

NAME = "directory"


def directory_spec(settings: Settings) -> ServiceSpec:
    return ServiceSpec(
        NAME, directory_definitions(enforce_orgnr_check_digit=settings.orgnr_check_digit)
    )
