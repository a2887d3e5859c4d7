"""The project's code systems as FHIR CodeSystem resources, read-only at
`/fhir/CodeSystem`: the consent service's own (consent purposes, legal bases), those
declared in `shared.codes` (data categories, organisation kinds, care roles, contact
relationships) and every other service's, gathered by `services.catalogue`.

They hold nothing about a patient, so every registered caller reads them. They are
written at start-up from the code (`services.consent.conformance`), never over the FHIR
API.
"""

from __future__ import annotations

from services.consent.domain.model import LEGAL_BASIS_SYSTEM, LegalBasis, Purpose
from shared.codes import CONSENT_PURPOSE_SYSTEM
from shared.fhir.code_systems import SHARED_CODE_SYSTEMS, CodeSystemSource
from shared.fhir.definitions import Change, EventSpec, ResourceDefinition
from shared.fhir.search_params import ParamType, SearchParam

CODE_SYSTEMS = (
    CodeSystemSource(CONSENT_PURPOSE_SYSTEM, "Consent purposes", Purpose),
    CodeSystemSource(LEGAL_BASIS_SYSTEM, "Legal bases", LegalBasis),
    *SHARED_CODE_SYSTEMS,
)
"""The consent service's own code systems and those of `shared.codes`."""
CODE_SYSTEM_WRITER = "barnebro itself, from the codes it is built with"


class CodeSystemDefinition(ResourceDefinition):
    resource_type = "CodeSystem"
    documentation = (
        "The project's code systems (consent purposes and legal bases, data categories,"
        " organisation kinds, care roles, the referral, care plan and subscription"
        " vocabularies), each at its canonical URL"
    )
    written_by = CODE_SYSTEM_WRITER
    search_params = (
        SearchParam("url", ParamType.TOKEN, ("url",), "The code system's canonical URL"),
        SearchParam("name", ParamType.STRING, ("name",), "Its computer-friendly name"),
        SearchParam("title", ParamType.STRING, ("title",), "Its name for people"),
        SearchParam("status", ParamType.TOKEN, ("status",), "Always active"),
        SearchParam("code", ParamType.TOKEN, ("concept.code",), "A code it defines"),
    )

    def events(self, change: Change) -> list[EventSpec]:
        return []  # they change only with the code, which says so itself
