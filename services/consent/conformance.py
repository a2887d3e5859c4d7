"""The code systems and the conformance resources (profiles, extension definitions, value
sets, search parameters, operation definitions), written at start-up from the code of
every service (`services.catalogue`): created when missing, updated when the code's
version differs, left alone otherwise (instances that start together take turns). They
are not validated against the FHIR model at each start:
tests/test_conformance_resources.py validates every one of them."""

from __future__ import annotations

from services.consent.handlers import SERVICE_CALLER
from shared.config import Settings
from shared.fhir.code_systems import code_system_resource
from shared.fhir.fixed_resources import publish_fixed
from shared.fhir.service import FhirService
from shared.transport.wire import FhirRequest

CODE_SYSTEM_LOCK = "code-systems"
CONFORMANCE_LOCK = "conformance-resources"


async def publish_code_systems(fhir: FhirService) -> int:
    """Write the code systems that differ from the stored ones; how many were written."""
    # The catalogue reads every service's declarations, this one's among them: imported
    # once this package has loaded.
    from services.catalogue import PROJECT_CODE_SYSTEMS

    request = FhirRequest(interaction="update", base_url="", caller=SERVICE_CALLER)
    wanted = [code_system_resource(source) for source in PROJECT_CODE_SYSTEMS]
    return await publish_fixed(
        fhir, request, CODE_SYSTEM_LOCK, "CodeSystem", wanted, validated=True
    )


async def publish_conformance(fhir: FhirService, settings: Settings) -> int:
    """Write the conformance resources that differ from the stored ones; how many."""
    # The catalogue reads every service's declarations, this one's among them: imported
    # once this package has loaded.
    from services.catalogue import project_conformance

    request = FhirRequest(interaction="update", base_url="", caller=SERVICE_CALLER)
    written = 0
    for resource_type, wanted in project_conformance(settings).by_type.items():
        written += await publish_fixed(
            fhir, request, CONFORMANCE_LOCK, resource_type, wanted, validated=True
        )
    return written
