"""`POST /fhir/Patient/{id}/$care-order`: a barnevernstjeneste states its own care order.

The holder of a care order is the only source entitled to state it, and it may not yet
have any other relation to the child (the child may be registered by BUP or the GP), so
it records the order here rather than by rewriting a Patient it cannot see. Input, a
Parameters resource:
- `action` (valueCode): `start` a care order held by the caller, `end` the caller's open
  one, or `transfer` it to another barnevernstjeneste (`successor`);
- `date` (valueDate, default today): the first day (start, transfer) or the last day (end);
- `successor` (valueIdentifier, organisasjonsnummer): the new holder, for `transfer`.

The answer is an OperationOutcome with the new version's ETag (the caller reads the
Patient as its relation allows). Any barnevernstjeneste may `start` one (that is how it
takes a child into care); `end` and `transfer` by one that has no relation to the child
(it may not see the Patient and holds no care order of it) answer exactly as for a child
that is not registered, so they tell nothing about one it may not see. The change is a
new version of the Patient with the directory's `care-order-started` / `care-order-ended`
events, which the consent service follows (who may consent changes at once) and records in
the audit trail.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from services.directory.child_record import holders_held, locked_child
from services.directory.domain.care_orders import (
    CARE_ORDER_ACTIONS,
    apply_action,
    care_order_contacts,
    holder_of,
    with_care_orders,
)
from services.directory.resources import CARE_ORDER_OPERATION, CARE_ORDER_PARAMETERS
from shared.clock import today
from shared.codes import OrganisationKind, organisation_kinds
from shared.fhir.answers import json_response, not_found
from shared.fhir.errors import error, information, operation_outcome
from shared.fhir.parameters import operation_parameters
from shared.fhir.resources import ID_PATTERN
from shared.fhir.service import FhirService
from shared.fhir.unit_of_work import StoreUnitOfWork
from shared.identifiers import ORGNR_SYSTEM
from shared.rules import refuse
from shared.store.resource_store import StoredResource
from shared.transport.wire import FhirRequest, FhirResponse

MAX_DAYS_AHEAD = 366
"""How far ahead a care order may be recorded to start (a decision taking effect later)."""


def _day(value: Any) -> date:
    if value is None:
        return today()
    try:
        if not isinstance(value, str) or len(value) != 10:
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError as exc:
        raise error(400, "invalid", "date must be a full date (YYYY-MM-DD)", "date") from exc


class CareOrderOperation:
    def __init__(self, fhir: FhirService) -> None:
        self.fhir = fhir

    def operations(self) -> dict[str, Any]:
        return {CARE_ORDER_OPERATION: self.handle}

    @staticmethod
    async def _organization(uow: StoreUnitOfWork, orgnr: str) -> StoredResource | None:
        found = await uow.find("Organization", [("identifier", f"{ORGNR_SYSTEM}|{orgnr}")])
        return found[0] if found else None

    @staticmethod
    async def _related(
        uow: StoreUnitOfWork, stored: StoredResource, holder: StoredResource | None
    ) -> bool:
        """Whether the caller holds (or held) a care order of the child, or may see it."""
        orders = care_order_contacts(stored.json())
        if holder is not None and any(holder_of(c) == holder.reference for c in orders):
            return True
        return await uow.data.guard.permits(uow.request, stored)

    async def handle(self, request: FhirRequest, body: bytes) -> FhirResponse:
        if request.resource_type != "Patient" or not ID_PATTERN.fullmatch(request.id or ""):
            raise error(400, "invalid", f"{CARE_ORDER_OPERATION} is an operation on Patient/<id>")
        found = operation_parameters(body, CARE_ORDER_OPERATION, declared=CARE_ORDER_PARAMETERS)
        action = found.get("action")
        if action not in CARE_ORDER_ACTIONS:
            raise error(
                400, "invalid", f"action must be one of {', '.join(CARE_ORDER_ACTIONS)}", "action"
            )
        day = _day(found.get("date"))
        successor = found.get("successor")
        if action == "transfer":
            if not isinstance(successor, dict) or successor.get("system") != ORGNR_SYSTEM:
                raise error(
                    400,
                    "required",
                    "A transfer names its successor by organisasjonsnummer (valueIdentifier)",
                    "successor",
                )
        elif successor is not None:
            raise error(400, "invalid", "successor is given only with action transfer")
        patient_id = str(request.id)
        async with self.fhir.unit_of_work(request) as uow:
            stored = await locked_child(uow, patient_id)
            holder = await self._organization(uow, request.caller.orgnr or "")
            if action != "start" and not await self._related(uow, stored, holder):
                raise not_found("Patient", patient_id)
            if holder is None:
                raise error(403, "forbidden", "The caller's organisation is not registered")
            successor_ref = None
            if action == "transfer":
                assert isinstance(successor, dict)
                successor_org = await self._organization(uow, str(successor.get("value")))
                kinds = organisation_kinds(successor_org.json()) if successor_org else []
                if successor_org is None or kinds != [OrganisationKind.BARNEVERNSTJENESTE.value]:
                    raise error(
                        422,
                        "business-rule",
                        "A care order is transferred to a registered barnevernstjeneste",
                        "successor",
                    )
                if successor_org.reference == holder.reference:
                    raise error(422, "business-rule", "A care order is transferred to another")
                successor_ref = successor_org.reference
            patient = stored.json()
            born = str(patient.get("birthDate") or "")[:10]
            if (len(born) == 10 and day.isoformat() < born) or (
                day > today() + timedelta(days=MAX_DAYS_AHEAD)
            ):
                raise error(
                    422,
                    "business-rule",
                    f"A care order's date falls between the child's birth and {MAX_DAYS_AHEAD}"
                    " days from today",
                    "date",
                )
            result = apply_action(
                care_order_contacts(patient),
                action,
                holder=holder.reference,
                day=day,
                successor=successor_ref,
            )
            refuse(result.problems)
            await holders_held(uow, result.orders)
            with_care_orders(patient, result.orders)
            saved = await uow.save(patient, previous=stored)
        done = {"start": "started", "end": "ended", "transfer": "transferred"}[action]
        outcome = operation_outcome([information(f"The care order is {done} ({day})")])
        answer = json_response(200, outcome)
        answer.headers["ETag"] = saved.etag
        return answer
