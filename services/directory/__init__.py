"""The directory service: people and organisations (Patient, RelatedPerson, Organization,
Practitioner, PractitionerRole, HealthcareService), with Norwegian identifier rules, care
orders and parental responsibility that the consent service reads."""

from __future__ import annotations

from services.directory.care_order_operation import CareOrderOperation
from services.directory.resources import directory_definitions
from services.directory.start_care import StartCare
from shared.access.authority import announce_authority_changes
from shared.access.relations import RelationListener
from shared.config import Settings
from shared.runtime import Component, ServiceRuntime, ServiceSpec

NAME = "directory"


async def _extend(runtime: ServiceRuntime) -> list[Component]:
    """`$care-order`, `$start-care`, the relations other services announce as they make
    them, and changed authority over a child judged by the consent service before the
    answer (`shared.access.authority`)."""
    assert runtime.fhir is not None and runtime.nc is not None
    nc, settings = runtime.nc, runtime.settings
    runtime.fhir.operations.update(CareOrderOperation(runtime.fhir).operations())
    runtime.fhir.operations.update(StartCare(runtime.fhir).operations())
    runtime.fhir.after_commit.append(
        lambda: announce_authority_changes(nc, settings.nats_prefix, settings.request_timeout / 2)
    )
    return [RelationListener(runtime.nc, runtime.settings.nats_prefix, runtime.consent_view)]


def directory_spec(settings: Settings) -> ServiceSpec:
    return ServiceSpec(
        NAME,
        directory_definitions(enforce_orgnr_check_digit=settings.orgnr_check_digit),
        extend=_extend,
    )
