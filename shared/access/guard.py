"""The consent step in a service's request path: decide, audit, then release.

`FhirService` hands every resource that is about to leave the service to the guard: a
single resource (read, vread, history of one resource, a conditional-create hit, a GET in
a transaction) is decided with `decide`; a search or history page is filtered in SQL by
`visibility` (`filter_for`) and what remains is audited. Nothing about a patient is
returned before its audit record is stored. A denied resource answers exactly as a
missing one does (404), so a caller learns nothing about what it may not see.

What the guard decides follows the caller's cell of the permission table
(`shared.access.permissions`) for each type: `all` releases without a decision (still
audited), `own` only what the caller wrote or is named on, anything else by `decide`. A
released resource is shaped by its decision's obligations (a look-up's subset, a child's
record without its care orders) through its type's `ResourceDefinition.shaped`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping
from typing import Protocol
from urllib.parse import parse_qsl

from shared import clock
from shared.access.audit import AuditEntity, AuditRecord, audit_id
from shared.access.decision import (
    AccessContext,
    AccessDecision,
    ResourceFacts,
    actor_keys,
    decide,
    visibility,
)
from shared.access.permissions import Rule, action_of, permission
from shared.access.view import ConsentView
from shared.codes import DEFAULT_PURPOSE_OF_USE
from shared.fhir.answers import not_found
from shared.fhir.errors import FhirError
from shared.identifiers import PERSON_SYSTEMS
from shared.store.access_sql import AccessFilter
from shared.store.resource_store import AccessFor, StoredResource
from shared.transport.wire import FhirRequest

MAX_CACHED_FILTERS = 4096
NOTHING = AccessFilter()
"""Matches no patient data at all."""
OWN_BASES = frozenset({"own-data", "party", "self"})
LOOKUP_PARAMS = frozenset(
    {"_count", "_format", "_pretty", "_total", "_totalMethod", "_summary", "_elements"}
)
"""Parameters that shape a look-up's answer without changing what it selects."""
READING = frozenset(
    {"read", "vread", "search", "history-instance", "history-type", "read-operation"}
)
"""The interactions an emergency basis serves: it opens a child's information to read."""
Shaper = Callable[[bytes, tuple[str, ...]], bytes]
PLAIN_READS = frozenset({"read", "vread", "search", "history-instance", "history-type"})
REACHING = ("_include", "_revinclude", "_has")
"""Search parameters by which a search of one type releases or selects by another."""


class AuditSink(Protocol):
    async def record(self, record: AuditRecord) -> None: ...


def facts_of(stored: StoredResource) -> ResourceFacts:
    access = stored.access
    return ResourceFacts(
        stored.reference,
        access.patient,
        access.category,
        access.author,
        access.parties,
        stored.version,
    )


def is_identifier_lookup(request: FhirRequest) -> bool:
    """A search (or a conditional create) of Patient by exactly one full person
    identifier (`identifier=<fødselsnummer system>|<number>`) and nothing else that
    selects: it finds at most one child (person numbers are unique keys). A search for
    the total alone (`_summary=count`, `_count=0`) is none: it would tell whether the
    child is registered without releasing (and so without auditing) the child."""
    if request.resource_type != "Patient":
        return False
    if request.interaction == "search":
        if any(
            (k == "_summary" and v == "count") or (k == "_count" and v and set(v) == {"0"})
            for k, v in request.params
        ):
            return False
        params = [(k, v) for k, v in request.params if k not in LOOKUP_PARAMS]
    elif request.interaction == "create" and request.if_none_exist:
        params = parse_qsl(request.if_none_exist, keep_blank_values=True)
    else:
        return False
    if len(params) != 1 or params[0][0] != "identifier":
        return False
    system, bar, value = params[0][1].partition("|")
    return bool(bar) and system in PERSON_SYSTEMS and value.isdigit() and "," not in value


def context_of(request: FhirRequest, *, lookup: bool = False) -> AccessContext:
    return AccessContext(
        caller=request.caller,
        purpose_of_use=request.purpose_of_use or DEFAULT_PURPOSE_OF_USE,
        emergency=request.emergency,
        lookup=lookup,
    )


def table_rule(request: FhirRequest, res_type: str, action: str) -> Rule:
    """The caller's cell for `action` on `res_type`; `NO` where the table refuses (the
    resource is then withheld as if it were not there)."""
    try:
        return permission(request.caller, res_type, action)
    except FhirError:
        return Rule.NO


def read_action(request: FhirRequest, res_type: str) -> str:
    """The table action a release of one `res_type` resource falls under: the search of
    the searched type (and of a conditional create's criteria), a read otherwise (a read by
    id, an included resource, a resource an operation or a write answers with)."""
    action = action_of(request)
    if res_type == request.resource_type and action in ("read", "search"):
        return action
    if res_type == request.resource_type and request.if_none_exist:
        return "search"  # a conditional create finds what a search would
    return "read"


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
        shapers: Mapping[str, Shaper] | None = None,
    ) -> None:
        """`categories`: each type's main data category (None: not patient data);
        `type_categories`: every category a type's resources may hold, where more than
        one (each row is then filtered by its own)."""
        self.service = service
        self.view = view
        self.audit = audit
        self.categories = categories
        self.type_categories = type_categories or {}
        self.shapers = shapers or {}
        self._filters: dict[tuple[object, ...], AccessFilter] = {}

    async def current(self, request: FhirRequest) -> None:
        """Bring the consent view up to the bucket as it stood when `request` arrived
        (`ConsentView.caught_up`). Nothing waits that no decision on the view can follow:
        a barnebro service's own request (the table alone decides it), and a read, search
        or history of a type that is not patient data, naming no other type
        (`_include`, `_revinclude`, `_has`, a chain)."""
        if request.caller.credential == "service" or self._about_no_patient(request):
            return
        await self.view.caught_up()

    def _about_no_patient(self, request: FhirRequest) -> bool:
        if request.interaction not in PLAIN_READS or request.resource_type is None:
            return False
        if request.resource_type not in self.categories:
            return False  # a type this service does not hold: let the handler refuse it
        if self.categories[request.resource_type] is not None:
            return False
        return not any(k.startswith(REACHING) or "." in k for k, _ in request.params)

    def decide(
        self, request: FhirRequest, stored: StoredResource, action: str | None = None
    ) -> AccessDecision:
        """The decision for one resource, within the caller's cell of the table for
        `action` (by default: what releasing it in this request is, `read_action`)."""
        facts = facts_of(stored)
        if facts.category is None:
            return decide(None, facts, context_of(request))
        rule = table_rule(request, stored.res_type, action or read_action(request, stored.res_type))
        if rule is Rule.NO:
            return AccessDecision(False, "none", ("The permission table does not allow it",))
        if rule is Rule.ALL:
            return AccessDecision(True, "permitted", ("The permission table allows it",))
        self.view.ready()
        lookup = rule is Rule.LOOKUP and is_identifier_lookup(request)
        decision = decide(self.view.state(facts.patient), facts, context_of(request, lookup=lookup))
        if rule is Rule.OWN and decision.permit and decision.basis not in OWN_BASES:
            return AccessDecision(False, "none", (f"{stored.reference} is not the caller's own",))
        if decision.basis == "emergency" and request.interaction not in READING:
            return AccessDecision(False, "none", ("Emergency access reads; it changes nothing",))
        return decision

    def shaped(self, stored: StoredResource, decision: AccessDecision) -> StoredResource:
        """The resource as this decision releases it (its obligations applied)."""
        shaper = self.shapers.get(stored.res_type)
        if shaper is None or not decision.obligations or stored.body is None:
            return stored
        body = shaper(stored.body, decision.obligations)
        return stored if body is stored.body else dataclasses.replace(stored, body=body)

    async def check(self, request: FhirRequest, stored: StoredResource) -> bool:
        """Decide one resource and audit the decision; False when the caller may not see it."""
        return await self.release(request, stored) is not None

    async def release(self, request: FhirRequest, stored: StoredResource) -> StoredResource | None:
        """Decide one resource and audit the decision; the resource as released, or None
        when the caller may not see it."""
        decision = self.decide(request, stored)
        if stored.access.category is not None:
            await self._record(request, [_entity(stored, decision)])
        return self.shaped(stored, decision) if decision.permit else None

    def may_release(self, request: FhirRequest, stored: StoredResource) -> bool:
        return self.decide(request, stored).permit

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

    async def require(self, request: FhirRequest, stored: StoredResource) -> StoredResource:
        """`release`, answering a denial as if the resource did not exist."""
        released = await self.release(request, stored)
        if released is None:
            raise not_found(stored.res_type, stored.res_id)
        return released

    def filter_for(self, request: FhirRequest) -> AccessFor:
        """The SQL filter of each resource type for this request.

        A filter depends only on the caller, the category, the purpose, an emergency, the
        day and the states that concern the caller; it is kept until one of those states
        changes (`ConsentView.versions`). The filter of a search by patient is made from
        those patients' states alone: the same rows about them (`visibility` takes each
        state on its own), at the cost of the search rather than of every child the
        caller may see."""
        context = context_of(request)
        caller = context.caller
        emergency = context.emergency.patient if context.emergency else None
        identity = (caller.credential, caller.orgnr, caller.org_kind, caller.fhir_user,
                    caller.hpr, tuple(caller.roles))  # fmt: skip
        keys = actor_keys(caller)

        def for_category(category: str, patients: Collection[str] | None) -> AccessFilter:
            if patients is not None:  # computed from their states alone, not kept
                states = self.view.states_among(keys, patients)
                return visibility(states, category, context).within(patients)
            key = (identity, category, context.purpose_of_use, emergency, context.day,
                   self.view.versions(keys))  # fmt: skip
            found = self._filters.get(key)
            if found is None:
                if len(self._filters) >= MAX_CACHED_FILTERS:
                    self._filters.clear()
                states = self.view.states_for(keys)
                found = self._filters[key] = visibility(states, category, context)
            return found

        def access_for(
            res_type: str, patients: Collection[str] | None = None
        ) -> AccessFilter | None:
            category = self.categories.get(res_type)
            if category is None:
                return None
            rule = table_rule(request, res_type, read_action(request, res_type))
            if rule is Rule.NO:
                return NOTHING
            if rule is Rule.ALL:
                return None
            if rule is Rule.OWN:
                return AccessFilter(orgs=(caller.orgnr,)) if caller.orgnr else NOTHING
            looked_up = rule is Rule.LOOKUP and res_type == request.resource_type
            if looked_up and is_identifier_lookup(request):
                return None  # one child at most; each row is decided in `released`
            self.view.ready()
            several = self.type_categories.get(res_type, ())
            if len(several) > 1:
                narrowed = tuple((c, for_category(c, patients)) for c in several)
                return AccessFilter(by_category=narrowed)
            return for_category(category, patients)

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
                kept.append(self.shaped(stored, decision))
                entities.append(_entity(stored, decision))
        if entities or self.categories.get(searched or "") is not None:
            await self._record(request, entities, query)
        return kept

    async def missing(self, request: FhirRequest, res_type: str, res_id: str) -> None:
        """Record a read of a patient-data resource that does not exist, as a denied one
        is recorded: a probe is worth knowing about, and the two take the same time."""
        if self.categories.get(res_type) is None or request.caller.credential == "service":
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

    async def conflicted(self, request: FhirRequest, res_type: str, res_id: str) -> None:
        """Record that a create was refused because `res_type/res_id` holds a business key
        it named (a person number): the refusal tells the caller the person is registered,
        as a look-up would, so it is audited like one, as withheld (whom it concerned is
        the operator's to read)."""
        category = self.categories.get(res_type)
        if category is None or request.caller.credential == "service":
            return
        entity = AuditEntity.model_construct(
            reference=res_type,  # the create's target: the holder's id is not the caller's
            patient=res_id if res_type == "Patient" else None,
            category=category,
            permit=False,
            basis="already-registered",
            consents=[],
            reasons=[f"The create named a business key {res_type}/{res_id} holds"],
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
                recorded=clock.now_instant(),
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
