"""The child's record as a write finds it: locked under the child, and a missing one
audited and answered as any missing resource is (404); and the holders of its open care
orders kept in the register until the write commits."""

from __future__ import annotations

from typing import Any

from services.directory.domain.care_orders import open_holders
from shared.clock import today
from shared.fhir.answers import not_found
from shared.fhir.definitions import UnitOfWork
from shared.fhir.errors import error
from shared.fhir.references import reference_target
from shared.fhir.unit_of_work import StoreUnitOfWork
from shared.store.resource_store import StoredResource
from shared.store.write_locks import held


async def locked_child(uow: StoreUnitOfWork, patient_id: str) -> StoredResource:
    """The current Patient, locked for the rest of the unit of work."""
    stored = await uow.read_for_update("Patient", patient_id, patient=patient_id)
    if stored is None or stored.deleted:
        await uow.data.guard.missing(uow.request, "Patient", patient_id)
        raise not_found("Patient", patient_id)
    return stored


async def holders_held(uow: UnitOfWork, orders: list[dict[str, Any]]) -> None:
    """The holder of every care order in force (today or later) in the child's new version
    is registered, and stays so until the write commits (`held`): a holder is not deleted
    while it holds such an order (`OrganizationDefinition.check_delete`), and a deletion
    that checked before this write's commit would not see the order. 422 for a holder that
    is gone."""
    for holder in open_holders(orders, today()):
        target = reference_target(holder)
        if target is None or target[0] != "Organization" or not await held(uow.conn, *target):
            raise error(
                422,
                "business-rule",
                f"A care order must name a registered barnevernstjeneste; {holder} is not one",
                "Patient.contact",
            )
