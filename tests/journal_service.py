"""A small service holding patient information, for testing consent enforcement end to end.

The referral and care-plan services are not built yet; this service owns
`DocumentReference` (data category `journal`) and runs on the same `ServiceRuntime`,
`FhirService` and access guard as every barnebro service, so the tests exercise the real
data path: the gateway, NATS, the SQL access filter, the consent view and the audit trail.
"""

from __future__ import annotations

from typing import Any

from services.referral.domain.vocabulary import ATTACHMENT_SYSTEM, Attachment
from shared.codes import DataCategory
from shared.fhir.definitions import ResourceDefinition
from shared.fhir.references import reference_target
from shared.fhir.search_params import ParamType, SearchParam
from shared.runtime import ServiceSpec


class DocumentReferenceDefinition(ResourceDefinition):
    resource_type = "DocumentReference"
    documentation = "Test-only: a journal note about a patient"
    data_category = DataCategory.JOURNAL.value
    search_params = (
        SearchParam(
            "patient", ParamType.REFERENCE, ("subject",), "The patient", targets=("Patient",)
        ),
        SearchParam(
            "relatesto",
            ParamType.REFERENCE,
            ("relatesTo.target",),
            "A related note",
            targets=("DocumentReference",),
        ),
    )

    def patient_of(self, resource: dict[str, Any], resource_id: str) -> str | None:
        target = reference_target(resource.get("subject"))
        return target[1] if target and target[0] == "Patient" else None


def journal_spec() -> ServiceSpec:
    return ServiceSpec("journal", [DocumentReferenceDefinition()])


def note(patient_id: str, text: str, relates_to: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "status": "current",
        # Every DocumentReference answered is held to barnebro's profile of the type (the
        # referral attachment's), which requires a type from referral-attachment.
        "type": {"coding": [{"system": ATTACHMENT_SYSTEM, "code": Attachment.ANNET.value}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "description": text,
        "content": [{"attachment": {"contentType": "text/plain", "url": "urn:note"}}],
    }
    if relates_to:
        resource["relatesTo"] = [{"code": "appends", "target": {"reference": relates_to}}]
    return resource
