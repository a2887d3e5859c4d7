"""`POST /fhir/Patient/{id}/$start-care`: a health or barnevern organisation declares that it
has taken the child into its care (behandlingsrelasjon), and so gains a relation to it.

Most relations come from the records an organisation writes (a referral, a registration,
a plan); this is for the organisation that starts its part in a child's care before it has
written anything, e.g. a BUP seeing a child registered by someone else, or a municipality
collecting the consent to an individual plan. The declaration states why (`reason`,
valueString), is an event of the directory (`Patient.care-started`, with the organisation
as its party, so the consent service records the relation as it records any other) and an
AuditEvent, and takes effect at once. It gives the organisation the child's record and
the consent API's answers about the child, never any patient information, which stays with
the consent step. Answer: an OperationOutcome.
"""

from __future__ import annotations

from typing import Any

from services.directory.child_record import locked_child
from services.directory.resources import START_CARE_OPERATION, START_CARE_PARAMETERS
from shared.access.relations import note_relations
from shared.events import DomainEvent, EventAccess
from shared.fhir.answers import json_response
from shared.fhir.errors import error, information, operation_outcome
from shared.fhir.parameters import operation_parameters
from shared.fhir.resources import ID_PATTERN
from shared.fhir.service import FhirService
from shared.transport.wire import FhirRequest, FhirResponse


class StartCare:
    def __init__(self, fhir: FhirService) -> None:
        self.fhir = fhir

    def operations(self) -> dict[str, Any]:
        return {START_CARE_OPERATION: self.handle}

    async def handle(self, request: FhirRequest, body: bytes) -> FhirResponse:
        patient_id = request.id or ""
        if request.resource_type != "Patient" or not ID_PATTERN.fullmatch(patient_id):
            raise error(400, "invalid", f"{START_CARE_OPERATION} is an operation on Patient/<id>")
        found = operation_parameters(body, START_CARE_OPERATION, declared=START_CARE_PARAMETERS)
        reason = found.get("reason")
        if not isinstance(reason, str) or not 3 <= len(reason.strip()) <= 1000:
            raise error(
                400, "required", "Say why the child is taken into care (reason, 3-1000)", "reason"
            )
        caller = request.caller
        async with self.fhir.unit_of_work(request) as uow:
            stored = await locked_child(uow, patient_id)
            event = DomainEvent(
                type=f"{self.fhir.name}.Patient.care-started",
                source=self.fhir.name,
                resource_type="Patient",
                resource_id=patient_id,
                version_id=str(stored.version),
                patient=patient_id,
                data={
                    "actor": caller.model_dump(exclude_defaults=True),
                    "reason": reason.strip(),
                },
                access=EventAccess(category=stored.access.category, parties=[caller.orgnr or ""]),
            )
            await uow.add_event(event)
            note_relations(patient_id, {caller.orgnr} if caller.orgnr else set())
        return json_response(
            200,
            operation_outcome([information(f"Care of Patient/{patient_id} started: {reason}")]),
        )
