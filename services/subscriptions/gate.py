"""The consent step of every notification: may this partner learn of this event now?

Decided at delivery time (and again on every retry and replay) with the consent library,
on the subscriber's organisation and the access facts the event carries: what it decides
is what a read of the resource by that organisation would decide, the permission table
first (a school never learns of a consent record, for one). Without a basis the
partner is told nothing of the event. An event about a patient that carries no access
facts is withheld (fail closed). Every release of a patient's event is audited.
"""

from __future__ import annotations

from shared import clock
from shared.access.audit import AuditEntity, AuditRecord, audit_id
from shared.access.decision import AccessContext, AccessDecision, ResourceFacts, decide
from shared.access.guard import AccessGuard
from shared.access.permissions import permits
from shared.codes import DEFAULT_PURPOSE_OF_USE
from shared.events import DomainEvent
from shared.transport.wire import Caller

NOT_PATIENT_DATA = AccessDecision(True, "not-patient-data", ("Not information about a patient",))


def reference_of(event: DomainEvent) -> str:
    return f"{event.resource_type}/{event.resource_id}"


def focus_of(event: DomainEvent) -> str:
    """The version the event is about, `Type/id/_history/version`: a notification's focus."""
    return f"{reference_of(event)}/_history/{event.version_id}"


class ConsentGate:
    def __init__(self, guard: AccessGuard, service: str) -> None:
        self._guard = guard
        self._service = service

    async def current(self) -> None:
        """Before a batch is decided: the consent view holds every change answered before
        it (a withdrawal answered before the delivery began withholds its events). Raises
        a 503 FhirError when it cannot be brought up to date."""
        await self._guard.view.caught_up()

    def decide(self, subscriber: Caller, event: DomainEvent) -> AccessDecision:
        """Raises a 503 FhirError while the consent view is not loaded (try later)."""
        access = event.access
        if access is None:
            if event.patient is None:
                return NOT_PATIENT_DATA
            return AccessDecision(False, "none", ("The event carries no access facts",))
        facts = ResourceFacts(
            reference_of(event),
            event.patient,
            access.category,
            access.author,
            tuple(access.parties),
            int(event.version_id) if event.version_id.isdigit() else None,
        )
        if facts.category is None:
            return NOT_PATIENT_DATA
        if not permits(subscriber, event.resource_type, "read"):
            return AccessDecision(False, "none", ("The permission table does not allow it",))
        view = self._guard.view
        view.ready()
        return decide(view.state(event.patient), facts, AccessContext(caller=subscriber))

    async def record(
        self,
        subscriber: Caller,
        released: list[tuple[DomainEvent, AccessDecision]],
        interaction: str,
        query: str | None = None,
    ) -> None:
        """Audit what a notification (or a replay) released about patients."""
        entities = [
            AuditEntity.model_construct(
                reference=reference_of(event),
                patient=event.patient,
                category=event.access.category if event.access else None,
                permit=True,
                basis=decision.basis,
                consents=list(decision.consents),
                reasons=[],
            )
            for event, decision in released
            if event.patient is not None and decision.basis != "not-patient-data"
        ]
        if not entities:
            return
        await self._guard.audit.record(
            AuditRecord.model_construct(
                id=audit_id(),
                recorded=clock.now_instant(),
                service=self._service,
                interaction=interaction,
                orgnr=subscriber.orgnr,
                org_kind=subscriber.org_kind,
                hpr=None,
                fhir_user=None,
                client_id=subscriber.client_id,
                purpose_of_use=DEFAULT_PURPOSE_OF_USE,
                emergency_reason=None,
                query=query,
                entities=entities,
            )
        )
