"""The consent step in a service's request path: decide, audit, then release.

`FhirService` hands every resource that is about to leave the service to the guard: a
single resource (read, vread, history of one resource, a conditional-create hit, a GET in
a transaction) is decided with `decide`; a search or history page is filtered in SQL by
`visibility` (`filter_for`) and what remains is audited. Nothing about a patient is
returned before its audit record is stored. A denied resource answers exactly as a
missing one does (404), so a caller learns nothing about what it may not see.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from shared.access.audit import AuditEntity, AuditRecord, audit_id
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
from shared.fhir.search_params import format_instant
from shared.store.access_sql import AccessFilter
from shared.store.resource_store import AccessFor, StoredResource
from shared.transport.wire import FhirRequest

MAX_CACHED_FILTERS = 4096


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
    # Built from values this module produced: no validation needed on the read path. A
    # release by consent or own data is explained by its basis and consent ids; the
    # reasons are kept where a reviewer needs them (denials, emergencies, §33).
    explained = not decision.permit or decision.basis not in ("consent", "own-data", "party")
    return AuditEntity.model_construct(
        reference=stored.reference,
        patient=stored.access.patient,
        category=stored.access.category,
        permit=decision.permit,
        basis=decision.basis,
        consents=list(decision.consents),
        reasons=list(decision.reasons) if explained else [],
    )


class AccessGuard:
    def __init__(
        self,
        service: str,
        view: ConsentView,
        audit: AuditSink,
        categories: dict[str, str | None],
        type_categories: dict[str, tuple[str, ...]] | None = None,
    ) -> None:
        """`categories`: each type's main data category (None: not patient data);
        `type_categories`: every category a type's resources may hold, where more than
        one (each row is then filtered by its own)."""
        self.service = service
        self.view = view
        self.audit = audit
        self.categories = categories
        self.type_categories = type_categories or {}
        self._filters: dict[tuple[object, ...], AccessFilter] = {}

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

    async def permits(
        self, request: FhirRequest, stored: StoredResource, bases: frozenset[str] | None = None
    ) -> bool:
        """Whether the caller may see a resource a write of theirs refers to, on one of
        `bases` if given (e.g. only as its author or a party, not under a consent or in an
        emergency). Nothing is released, so only a refusal is recorded (a probe is worth
        knowing about)."""
        decision = self.decide(request, stored)
        if decision.permit and bases is not None and decision.basis not in bases:
            decision = AccessDecision(
                False,
                "none",
                (f"{stored.reference} may be seen on basis {decision.basis}, not passed on",),
            )
        if not decision.permit and stored.access.category is not None:
            await self._record(request, [_entity(stored, decision)])
        return decision.permit

    async def require(self, request: FhirRequest, stored: StoredResource) -> None:
        """`check`, answering a denial as if the resource did not exist."""
        if not await self.check(request, stored):
            raise error(404, "not-found", f"{stored.reference} is not known")

    def filter_for(self, request: FhirRequest) -> AccessFor:
        """The SQL filter of each resource type for this request.

        A filter depends only on the caller, the category, the purpose, an emergency, the
        day and the states that concern the caller; it is kept until one of those states
        changes (`ConsentView.versions`)."""
        context = context_of(request)
        caller = context.caller
        emergency = context.emergency.patient if context.emergency else None
        identity = (caller.orgnr, caller.org_kind, caller.fhir_user, tuple(caller.roles))
        keys = actor_keys(caller)

        def for_category(category: str) -> AccessFilter:
            key = (identity, category, context.purpose_of_use, emergency, context.day,
                   self.view.versions(keys))  # fmt: skip
            found = self._filters.get(key)
            if found is None:
                if len(self._filters) >= MAX_CACHED_FILTERS:
                    self._filters.clear()
                states = self.view.states_for(keys)
                found = self._filters[key] = visibility(states, category, context)
            return found

        def access_for(res_type: str) -> AccessFilter | None:
            category = self.categories.get(res_type)
            if category is None:
                return None
            self.view.ready()
            several = self.type_categories.get(res_type, ())
            if len(several) > 1:
                return AccessFilter(by_category=tuple((c, for_category(c)) for c in several))
            return for_category(category)

        return access_for

    async def released(
        self,
        request: FhirRequest,
        resources: list[StoredResource],
        query: str | None = None,
        *,
        searched: str | None = None,
    ) -> list[StoredResource]:
        """Audit what a search or history page releases (already filtered in SQL) and
        return it. A resource `decide` now denies (the consent state changed since the
        query ran) is dropped: the answer fails closed. A search of a patient-data type
        (`searched`) is recorded even when it releases nothing: who looked for what."""
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
        if entities or self.categories.get(searched or "") is not None:
            await self._record(request, entities, query)
        return kept

    async def missing(self, request: FhirRequest, res_type: str, res_id: str) -> None:
        """Record a read of a patient-data resource that does not exist, as a denied one
        is recorded: a probe is worth knowing about, and the two take the same time."""
        if self.categories.get(res_type) is None:
            return
        entity = AuditEntity.model_construct(
            reference=f"{res_type}/{res_id}",
            patient=None,
            category=self.categories[res_type],
            permit=False,
            basis="not-found",
            consents=[],
            reasons=[f"{res_type}/{res_id} is not known"],
        )
        await self._record(request, [entity])

    async def _record(
        self, request: FhirRequest, entities: list[AuditEntity], query: str | None = None
    ) -> None:
        caller = request.caller
        # Every field is given: pydantic's default factories cost ~40 µs a call here.
        await self.audit.record(
            AuditRecord.model_construct(
                id=audit_id(),
                recorded=format_instant(datetime.now(UTC)),
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
