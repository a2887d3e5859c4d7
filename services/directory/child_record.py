"""The child's record as an operation on it finds it: locked under the child, and a
missing one audited and answered as any missing resource is (404)."""

from __future__ import annotations

from shared.fhir.answers import not_found
from shared.fhir.unit_of_work import StoreUnitOfWork
from shared.store.resource_store import StoredResource


async def locked_child(uow: StoreUnitOfWork, patient_id: str) -> StoredResource:
    """The current Patient, locked for the rest of the unit of work."""
    stored = await uow.read_for_update("Patient", patient_id, patient=patient_id)
    if stored is None or stored.deleted:
        await uow.data.guard.missing(uow.request, "Patient", patient_id)
        raise not_found("Patient", patient_id)
    return stored
