"""The directory service: people and organisations (Patient, RelatedPerson, Organization,
Practitioner, PractitionerRole, HealthcareService), with Norwegian identifier rules, care
orders and parental responsibility that the consent service reads."""

from __future__ import annotations

from services.directory.care_order_operation import CareOrderOperation
from services.directory.resources import directory_definitions
from services.directory.start_care import StartCare
from shared.access.relations import RelationListener
from shared.config import Settings
from shared.runtime import Component, ServiceRuntime, ServiceSpec

NAME = "directory"


async def _extend(runtime: ServiceRuntime) -> list[Component]:
    """`$care-order`, `$start-care`, and the relations other services announce as they
    make them."""
    assert runtime.fhir is not None and runtime.nc is not None
    runtime.fhir.operations.update(CareOrderOperation(runtime.fhir).operations())
    runtime.fhir.operations.update(StartCare(runtime.fhir).operations())
    return [RelationListener(runtime.nc, runtime.settings.nats_prefix, runtime.consent_view)]


def directory_spec(settings: Settings) -> ServiceSpec:
    return ServiceSpec(
        NAME,
        directory_definitions(enforce_orgnr_check_digit=settings.orgnr_check_digit),
        extend=_extend,
    )
