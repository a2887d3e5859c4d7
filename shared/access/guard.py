"""The consent step in a service's request path: decide, audit, then release.

`FhirService` hands every resource that is about to leave the service to the guard: a
single resource (read, vread, history of one resource, a conditional-create hit, a GET in
a transaction) is decided with `decide`; a search or history page is filtered in SQL by
`visibility` (`filter_for`) and what remains is audited. Nothing about a patient is
returned before its audit record is stored. A denied resource answers exactly as a
missing one does (404), so a caller learns nothing about what it may not see.
"""

from __future__ import annotations

from typing import Protocol

from shared.access.audit import AuditEntity, AuditRecord
from shared.access.decision import (
    AccessContext,
    AccessDecision,
    ResourceFacts,
    actor_keys,
    decide,
    visibility,
)
from shared.access.view import ConsentView
from shared.codes import DEFAULT_PURPOSE_OF_USE
from shared.fhir.errors import error
from shared.store.access_sql import AccessFilter
from shared.store.resource_store import AccessFor, StoredResource
from shared.transport.wire import FhirRequest


class AuditSink(Protocol):
    async def record(self, record: AuditRecord) -> None: ...


def facts_of(stored: StoredResource) -> ResourceFacts:
    access = stored.access
    return ResourceFacts(
        stored.reference, access.patient, access.category, access.author, access.parties
    )


def context_of(request: FhirRequest) -> AccessContext:
    return AccessContext(
        caller=request.caller,
        purpose_of_use=request.purpose_of_use or DEFAULT_PURPOSE_OF_USE,
        emergency=request.emergency,
    )


def _entity(stored: StoredResource, decision: AccessDecision) -> AuditEntity:
    return AuditEntity(
        reference=stored.reference,
        patient=stored.access.patient,
        category=stored.access.category,
        permit=decision.permit,
        basis=decision.basis,
        consents=list(decision.consents),
        reasons=list(decision.reasons),
    )


class AccessGuard:
    def __init__(
        self, service: str, view: ConsentView, audit: AuditSink, categories: dict[str, str | None]
    ) -> None:
        self.service = service
        self.view = view
        self.audit = audit
        self.categories = categories

    def decide(self, request: FhirRequest, stored: StoredResource) -> AccessDecision:
        facts = facts_of(stored)
        if facts.category is not None:
            self.view.ready()
        return decide(self.view.state(facts.patient), facts, context_of(request))

    async def check(self, request: FhirRequest, stored: StoredResource) -> bool:
        """Decide one resource and audit the decision; False when the caller may not see it."""
        decision = self.decide(request, stored)
        if stored.access.category is not None:
            await self._record(request, [_entity(stored, decision)])
        return decision.permit

    async def require(self, request: FhirRequest, stored: StoredResource) -> None:
        """`check`, answering a denial as if the resource did not exist."""
        if not await self.check(request, stored):
            raise error(404, "not-found", f"{stored.reference} is not known")

    def filter_for(self, request: FhirRequest) -> AccessFor:
        """The SQL filter of each resource type for this request (computed once per type)."""
        context = context_of(request)
        cache: dict[str, AccessFilter | None] = {}

        def access_for(res_type: str) -> AccessFilter | None:
            if res_type not in cache:
                category = self.categories.get(res_type)
                if category is None:
                    cache[res_type] = None
                else:
                    self.view.ready()
                    states = self.view.states_for(actor_keys(request.caller))
                    cache[res_type] = visibility(states, category, context)
            return cache[res_type]

        return access_for

    async def released(
        self, request: FhirRequest, resources: list[StoredResource], query: str | None = None
    ) -> list[StoredResource]:
        """Audit what a search or history page releases (already filtered in SQL) and
        return it. A resource `decide` now denies (the consent state changed since the
        query ran) is dropped: the answer fails closed."""
        entities = []
        kept = []
        for stored in resources:
            if stored.access.category is None:
                kept.append(stored)
                continue
            decision = self.decide(request, stored)
            if decision.permit:
                kept.append(stored)
                entities.append(_entity(stored, decision))
        if entities:
            await self._record(request, entities, query)
        return kept

    async def _record(
        self, request: FhirRequest, entities: list[AuditEntity], query: str | None = None
    ) -> None:
        caller = request.caller
        await self.audit.record(
            AuditRecord(
                service=self.service,
                interaction=request.interaction,
                orgnr=caller.orgnr,
                org_kind=caller.org_kind,
                hpr=caller.hpr,
                fhir_user=caller.fhir_user,
                client_id=caller.client_id,
                purpose_of_use=request.purpose_of_use or DEFAULT_PURPOSE_OF_USE,
                emergency_reason=request.emergency.reason if request.emergency else None,
                query=query,
                entities=entities,
            )
        )
