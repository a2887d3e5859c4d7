"""hpl §33 disclosures as use cases: record one, list a child's, close one.

A disclosure is an AuditEvent (never a consent) that names the versions reported; while
it is open, the child's access state lets its recipient see exactly those versions. Each
change runs in the child's unit of work (`ConsentHandlers.child_unit`), so the state that
releases or stops releasing the versions is published with the record.
"""

from __future__ import annotations

import uuid
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import orjson

from services.consent.audit_events import (
    closed_disclosure,
    closure_of,
    disclosure_event,
    disclosure_json,
    disclosure_of,
    identified,
    is_disclosure,
)
from services.consent.domain.model import ChildFacts
from services.consent.records import patient_id_of
from shared.access.state import Disclosure
from shared.clock import now_instant
from shared.fhir import writes
from shared.fhir.answers import not_found
from shared.fhir.definitions import ResourceDefinition
from shared.fhir.errors import error
from shared.fhir.service import FhirService
from shared.fhir.unit_of_work import StoreUnitOfWork
from shared.identifiers import ORGNR_SYSTEM
from shared.store.stored import StoredResource
from shared.transport.wire import Caller, FhirRequest


class ChildUnits(Protocol):
    """What the use cases need of the consent service (`ConsentHandlers`): its store, the
    AuditEvent definition, and the child's unit of work that publishes the child's state."""

    fhir: FhirService
    audit_events: ResourceDefinition

    def child_unit(
        self, patient_id: str, request: FhirRequest
    ) -> AbstractAsyncContextManager[tuple[StoreUnitOfWork, ChildFacts]]: ...


class Disclosures:
    """The §33 use cases, in the consent service's units of work."""

    def __init__(self, handlers: ChildUnits) -> None:
        self.handlers = handlers

    async def record(
        self,
        request: FhirRequest,
        patient: str,
        recipient: str,
        resources: list[str],
        reason: str,
    ) -> dict[str, Any]:
        """Record an hpl §33 disclosure of `resources`, the versions reported
        (`Type/id/_history/<version>`), and publish the child's state that releases them."""
        patient_id = patient_id_of(patient)
        event = disclosure_event(
            str(uuid.uuid4()),
            now_instant(),
            patient=patient_id,
            reporter_orgnr=request.caller.orgnr,
            reporter_hpr=request.caller.hpr,
            recipient_orgnr=recipient,
            resources=resources,
            reason=reason,
        )
        async with self.handlers.child_unit(patient_id, request) as (uow, _):
            sub = request.model_copy(
                update={
                    "interaction": "update",
                    "resource_type": "AuditEvent",
                    "id": event["id"],
                    "prefer_return": None,
                }
            )
            response = await writes.update(uow.bound(sub), self.handlers.audit_events, event)
        stored: dict[str, Any] = orjson.loads(response.body)
        return stored

    async def of_patient(self, request: FhirRequest, patient_id: str) -> list[dict[str, Any]]:
        """The child's §33 disclosures the caller takes part in (as reporter or recipient;
        the operator: all), open and closed, oldest first."""
        async with self.handlers.fhir.reading(request) as uow:
            found = await _disclosure_events(uow, patient_id)
        events = [stored.json() for stored in found]
        listed = [
            disclosure_json(event, patient_id)
            for event in events
            if disclosure_party(event, request.caller) is not None
        ]
        return sorted(listed, key=lambda d: (str(d["recorded"]), d["id"]))

    async def close(self, request: FhirRequest, event_id: str, reason: str) -> dict[str, Any]:
        """Close a §33 disclosure: its recipient sees nothing more through it; the record
        stays, with when, why and by whom it was closed. The reporting organisation or the
        operator closes it; to anyone else who takes no part in it, it is not there."""
        async with self.handlers.fhir.reading(request) as uow:
            found = await uow.read("AuditEvent", event_id)
        patient_id = _party_to(found, request.caller, event_id)
        async with self.handlers.child_unit(patient_id, request) as (uow, _):
            latest = await uow.read_for_update("AuditEvent", event_id)
            _party_to(latest, request.caller, event_id)
            assert latest is not None
            event = latest.json()
            if disclosure_party(event, request.caller) == "recipient":
                raise error(
                    403,
                    "forbidden",
                    "A §33 disclosure is closed by the organisation that reported it, or by"
                    " the operator; its recipient cannot close it",
                )
            caller = request.caller
            if caller.credential != "operator" and not caller.hpr:
                raise error(
                    403,
                    "forbidden",
                    "A §33 disclosure is closed by a health person of the organisation that"
                    " reported it (the token's HPR number), or by the operator",
                )
            if closure_of(event) is not None:
                raise error(409, "business-rule", f"The disclosure {event_id} is closed already")
            operator = (caller.client_id or "operator") if caller.credential == "operator" else None
            closed = closed_disclosure(
                event, now_instant(), reason, caller.orgnr, caller.hpr, operator
            )
            sub = request.model_copy(
                update={
                    "interaction": "update",
                    "resource_type": "AuditEvent",
                    "id": event_id,
                    "if_match": latest.etag,
                    "prefer_return": None,
                }
            )
            response = await writes.update(
                uow.bound(sub), self.handlers.audit_events, closed, check_access=False
            )
        return disclosure_json(orjson.loads(response.body), patient_id)


async def open_disclosures(uow: StoreUnitOfWork, patient_id: str) -> list[Disclosure]:
    """The child's open §33 disclosures (a closed one releases nothing)."""
    found = [disclosed(stored.json()) for stored in await _disclosure_events(uow, patient_id)]
    return [disclosure for disclosure in found if disclosure is not None]


def disclosed(event: dict[str, Any]) -> Disclosure | None:
    """What a §33 disclosure's AuditEvent (one version of it) releases: its versions to
    its recipients while it is open; nothing once closed."""
    if closure_of(event) is not None:
        return None
    record, recipients, resources = disclosure_of(event)
    return Disclosure(
        record=f"AuditEvent/{record}", basis="hpl-33", recipients=recipients, resources=resources
    )


async def _disclosure_events(uow: StoreUnitOfWork, patient_id: str) -> list[StoredResource]:
    return await uow.carrying_all(
        "AuditEvent", [("subtype", "hpl-33"), ("patient", f"Patient/{patient_id}")], 1000
    )


def disclosure_party(event: dict[str, Any], caller: Caller) -> str | None:
    """How the caller takes part in a §33 disclosure: `reporter` (its organisation
    reported it), `recipient`, `operator`; None for anyone else."""
    if caller.credential == "operator":
        return "operator"
    if caller.fhir_user or caller.credential != "organisation" or not caller.orgnr:
        return None
    if caller.orgnr in identified(event, ORGNR_SYSTEM, True):
        return "reporter"
    if caller.orgnr in identified(event, ORGNR_SYSTEM, False):
        return "recipient"
    return None


def _party_to(stored: StoredResource | None, caller: Caller, event_id: str) -> str:
    """The patient id of the §33 disclosure `event_id` the caller takes part in; a 404,
    exactly as for one that does not exist, when it is none such."""
    if stored is None or stored.deleted or stored.access.patient is None:
        raise not_found("AuditEvent", event_id)
    event = stored.json()
    if not is_disclosure(event) or disclosure_party(event, caller) is None:
        raise not_found("AuditEvent", event_id)
    return stored.access.patient
