"""The conformance resources (profiles, extension definitions, value sets, search
parameters, operation definitions) written at start-up from the code of every service
(`services.catalogue`), like the code systems: created when missing, updated when the
code's version differs, left alone otherwise."""

from __future__ import annotations

from services.consent.handlers import SERVICE_CALLER
from shared.config import Settings
from shared.fhir.fixed_resources import publish_fixed
from shared.fhir.service import FhirService
from shared.transport.wire import FhirRequest

CONFORMANCE_LOCK = "conformance-resources"


async def publish_conformance(fhir: FhirService, settings: Settings) -> int:
    """Write the conformance resources that differ from the stored ones; how many."""
    # The catalogue reads every service's declarations, this one's among them: imported
    # once this package has loaded.
    from services.catalogue import project_conformance

    request = FhirRequest(interaction="update", base_url="", caller=SERVICE_CALLER)
    written = 0
    for resource_type, wanted in project_conformance(settings).by_type.items():
        written += await publish_fixed(fhir, request, CONFORMANCE_LOCK, resource_type, wanted)
    return written
