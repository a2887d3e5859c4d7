"""The child's record as an operation on it finds it: locked under the child, and a
missing one audited and answered as any missing resource is (404)."""

from __future__ import annotations

from shared.fhir.errors import error
from shared.fhir.interactions import FhirService
from shared.store.database import Connection
from shared.store.outbox import lock_patient
from shared.store.resource_store import StoredResource
from shared.transport.wire import FhirRequest


async def locked_child(
    fhir: FhirService, conn: Connection, request: FhirRequest, patient_id: str
) -> StoredResource:
    """The current Patient, locked for the rest of the transaction."""
    await lock_patient(conn, patient_id)
    stored = await fhir.store.read_for_update(conn, "Patient", patient_id)
    if stored is None or stored.deleted:
        if fhir.guard is not None:
            await fhir.guard.missing(request, "Patient", patient_id)
        raise error(404, "not-found", f"Patient/{patient_id} is not known")
    return stored
