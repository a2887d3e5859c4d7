"""The consent service's use cases, each one unit of work.

Recording a consent, adding a grantor's answer, the child's view, a hearing or the
child's objection, withdrawing, and reassessing a child's consents when the directory or
the calendar changes who may consent (hpl §33 disclosures are `disclosures.py`, in the
same units of work). Each runs in one database transaction that writes the Consent, its
events and the patient's new access state to the outbox, under the patient's lock, so
concurrent changes to one child are applied one after another and the state every service
mirrors is never older than the records.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson

from services.consent.access_state import patient_state
from services.consent.directory import ChildNotRegistered, DirectoryReader
from services.consent.disclosures import open_disclosures
from services.consent.domain.authority import HIDE_FROM_PARENTS, who_may_consent
from services.consent.domain.dates import (
    consent_date_problems,
    heard_date_problems,
    signature_date_problems,
)
from services.consent.domain.lifecycle import (
    authority_error,
    evaluate,
    latest_answers,
    unauthorised_grantors,
)
from services.consent.domain.model import (
    Authority,
    ChildFacts,
    ConsentFlags,
    Decision,
    Purpose,
    Status,
)
from services.consent.records import (
    TO_BARNEVERN,
    ChildViewRecord,
    ConsentRecord,
    Recipients,
    SignatureRecord,
    WithdrawalRecord,
    from_fhir,
    patient_id_of,
    to_fhir,
)
from services.consent.relation_table import related
from shared.access.permissions import ACTOR_KINDS, Actor
from shared.access.state import PatientAccessState
from shared.bounded import each_at_most
from shared.clock import now_instant, today
from shared.events import subject_token
from shared.fhir import writes
from shared.fhir.answers import not_found
from shared.fhir.errors import FhirError, Issue, error
from shared.fhir.service import FhirService
from shared.fhir.unit_of_work import StoreUnitOfWork
from shared.rules import refuse
from shared.store.outbox import add_message
from shared.transport.wire import Caller, FhirRequest

log = logging.getLogger(__name__)

BARNEVERN_KINDS = frozenset(ACTOR_KINDS[Actor.BARNEVERNSTJENESTE] | ACTOR_KINDS[Actor.BARNEVERN])
SERVICE_CALLER = Caller(credential="service", client_id="barnebro-consent")


def service_update(resource_type: str, res_id: str) -> FhirRequest:
    """An update the consent service makes on its own behalf (reassessment, audit trail)."""
    return FhirRequest(
        interaction="update",
        resource_type=resource_type,
        id=res_id,
        base_url="",
        caller=SERVICE_CALLER,
    )


Judged = tuple[ConsentRecord, Authority]
OPEN_STATUSES = (Status.PROPOSED, Status.ACTIVE)


@dataclass(frozen=True)
class Outcome:
    """A stored consent with the authority it was judged by."""

    record: ConsentRecord
    authority: Authority
    consent: dict[str, Any]


def _refuse_unauthorised(authority: Authority, signatures: list[SignatureRecord]) -> None:
    if not authority.decidable:
        raise FhirError(
            422,
            [Issue("business-rule", authority.explanation)]
            + [Issue("required", missing) for missing in authority.missing],
        )
    facts = [s.facts() for s in signatures]
    problems = [
        Issue("forbidden", authority_error(authority, grantor))
        for grantor in unauthorised_grantors(authority, facts)
    ]
    if problems:
        raise FhirError(422, problems)


def judged(record: ConsentRecord, authority: Authority, day: date) -> ConsentRecord:
    """`record` with the status, reasons and rule the consent rules give it today."""
    evaluation = evaluate(authority, record.facts(), day)
    obligations = list(evaluation.obligations)
    if HIDE_FROM_PARENTS in record.obligations and HIDE_FROM_PARENTS not in obligations:
        obligations.append(HIDE_FROM_PARENTS)  # what was told in confidence stays so
    ended_because = record.ended_because
    if evaluation.status is Status.INACTIVE and ended_because is None:
        ended_because = "withdrawn" if record.withdrawal else "expired"
    return record.model_copy(
        update={
            "status": evaluation.status,
            "reasons": list(evaluation.reasons),
            "missing": list(evaluation.missing),
            "obligations": obligations,
            "valid_until": evaluation.valid_until,
            "rule": authority.rule,
            "legal_reference": authority.legal_reference,
            "ended_because": ended_because,
        }
    )


def reassessed(record: ConsentRecord, authority: Authority, day: date) -> ConsentRecord:
    """An open consent judged again under today's authority.

    If today's rule is satisfied by the signatures already given (a child of 15 whose own
    consent is now enough), it stays or becomes active. A consent that was active but
    whose grantors no longer have the authority (the child turned 16, a care order began
    or ended) ends: it is flagged, and the new grantors must decide.
    """
    again = judged(record, authority, day)
    if again.status is Status.ACTIVE or record.status is not Status.ACTIVE:
        return again
    if again.status is Status.INACTIVE and again.ended_because in ("withdrawn", "expired"):
        return again
    who = ", ".join(authority.grantors) or "the grantors the rules name"
    return again.model_copy(
        update={
            "status": Status.INACTIVE,
            "ended_because": "authority-changed",
            "reasons": [
                "Who may consent has changed since this consent was given: "
                + authority.explanation,
                f"A new decision is needed from {who}.",
            ],
        }
    )


def _latest_answer(record: ConsentRecord, grantor: str) -> Decision | None:
    return latest_answers([s.facts() for s in record.signatures]).get(grantor)


def _judgement(record: ConsentRecord) -> tuple[Any, ...]:
    """What the rules decide about a record: a reassessment stores it when any of it moves."""
    return (record.status, record.reasons, record.valid_until, record.rule, record.obligations)


class ConsentHandlers:
    def __init__(
        self,
        fhir: FhirService,
        directory: DirectoryReader,
        *,
        prefix: str,
        view_bucket: str,
        clock: Callable[[], date] = today,
        children_at_once: int = 1,
    ) -> None:
        """`children_at_once`: how many children a consumer's batch works on at once (each
        holds a database connection while it reads the directory)."""
        self.fhir = fhir
        self.children_at_once = children_at_once
        self.directory = directory
        self.prefix = prefix
        self.view_bucket = view_bucket
        self.clock = clock
        self.consents = fhir.definitions["Consent"]
        self.audit_events = fhir.definitions["AuditEvent"]

    # -- questions ------------------------------------------------------------------------

    async def authority(
        self, patient: str, purpose: Purpose, day: date | None, flags: ConsentFlags
    ) -> Authority:
        child = await self.directory.child_facts(patient_id_of(patient))
        return who_may_consent(child, purpose, day or self.clock(), flags)

    # -- changes --------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def child_unit(
        self, patient_id: str, request: FhirRequest
    ) -> AsyncIterator[tuple[StoreUnitOfWork, ChildFacts]]:
        """One unit of work under the child's lock, with the child's facts read under it
        (so a state published here is never older than one a concurrent change
        published); it ends by queueing the child's new access state, and wakes the
        outbox relay once committed. Nothing is published if the body raises."""
        async with self.fhir.unit_of_work(request) as uow:
            await uow.lock_patient(patient_id)
            child = await self.directory.child_facts(patient_id)
            yield uow, child
            await self.publish_state(uow, patient_id, child)

    async def _answerers(
        self,
        request: FhirRequest,
        grantors: list[str],
        collector: str | None,
        known: dict[str, str],
    ) -> dict[str, str]:
        """Check who records each grantor's answer; return the orgnr of Organization
        grantors. A person logged in as themselves answers only for themselves; an
        organisation (the holder of a care order) only for itself; a person's answer
        given to an organisation is recorded by the organisation that collected the
        consent."""
        caller = request.caller
        resolved: dict[str, str] = {}
        for grantor in grantors:
            if caller.fhir_user:
                if grantor != caller.fhir_user:
                    raise error(403, "forbidden", f"{caller.fhir_user} cannot answer for {grantor}")
            elif grantor.startswith("Organization/"):
                orgnr = known.get(grantor) or await self.directory.orgnr_of(grantor)
                if orgnr is None or orgnr != caller.orgnr:
                    raise error(403, "forbidden", f"Only {grantor} itself records its own answer")
                resolved[grantor] = orgnr
            elif caller.orgnr is None or caller.orgnr != collector:
                raise error(
                    403,
                    "forbidden",
                    f"Only the organisation that collected the consent ({collector}) records"
                    f" {grantor}'s answer on their behalf; a grantor may answer with their"
                    " own login",
                )
        return resolved

    async def _grantor_organizations(
        self, authority: Authority, known: dict[str, str]
    ) -> dict[str, str]:
        """orgnr of every Organization the rules name as grantor, so it sees the consent
        it must answer."""
        found = dict(known)
        for grantor in authority.grantors:
            if grantor.startswith("Organization/") and grantor not in found:
                orgnr = await self.directory.orgnr_of(grantor)
                if orgnr is not None:
                    found[grantor] = orgnr
        return found

    async def _to_barnevern(self, recipients: Recipients) -> bool:
        """Whether a consent can reach barnevern: a recipient kind or organisation the
        register lists as a barnevernstjeneste, barneverninstitusjon or Bufetat, or any
        care role (a role names whoever holds it for the child, barnevern staff too)."""
        if recipients.roles or BARNEVERN_KINDS & set(recipients.kinds):
            return True
        for orgnr in recipients.organizations:
            if await self.directory.organisation_kind(orgnr) in BARNEVERN_KINDS:
                return True
        return False

    async def create(self, request: FhirRequest, record: ConsentRecord) -> Outcome:
        patient_id = patient_id_of(record.patient)
        flags = [flag for flag in record.flags if flag != TO_BARNEVERN]
        if await self._to_barnevern(record.recipients):
            flags.append(TO_BARNEVERN)
        record = record.model_copy(update={"flags": flags})
        collector = None if request.caller.fhir_user else request.caller.orgnr
        grantors = [s.grantor for s in record.signatures]
        answered = await self._answerers(request, grantors, collector, {})
        async with self.child_unit(patient_id, request) as (uow, child):
            day = self.clock()
            refuse(
                consent_date_problems(
                    start=record.start,
                    end=record.end,
                    signed=[signature.date for signature in record.signatures],
                    heard=record.child_view.date if record.child_view else None,
                    born=child.birth_date,
                    today=day,
                )
            )
            authority = who_may_consent(child, record.purpose, day, record.consent_flags())
            _refuse_unauthorised(authority, record.signatures)
            organizations = await self._grantor_organizations(authority, answered)
            record = judged(
                record.model_copy(
                    update={
                        "id": None,
                        "collected_by_organization": collector,
                        "grantor_organizations": organizations,
                        "recorded": now_instant(),
                        "withdrawal": None,
                        "ended_because": None,
                    }
                ),
                authority,
                day,
            )
            sub = request.model_copy(
                update={"interaction": "create", "resource_type": "Consent", "prefer_return": None}
            )
            response = await writes.create(uow.bound(sub), self.consents, to_fhir(record))
            stored = orjson.loads(response.body)
        return Outcome(from_fhir(stored), authority, stored)

    async def _change(
        self,
        request: FhirRequest,
        consent_id: str,
        change: Callable[[ConsentRecord, ChildFacts, date], Awaitable[Judged]],
    ) -> Outcome:
        """Read a consent, apply `change` and store the result, all under the patient's lock."""
        current = await self.fhir.repository(request).read("Consent", consent_id)
        if current is None or current.deleted:
            raise not_found("Consent", consent_id)
        patient_id = patient_id_of(from_fhir(current.json()).patient)
        async with self.child_unit(patient_id, request) as (uow, child):
            day = self.clock()
            latest = await uow.read_for_update("Consent", consent_id)
            assert latest is not None
            before = from_fhir(latest.json())
            record, authority = await change(before, child, day)
            if record == before:  # an answer already recorded: merged, not counted twice
                return Outcome(before, authority, latest.json())
            sub = request.model_copy(
                update={
                    "interaction": "update",
                    "resource_type": "Consent",
                    "id": consent_id,
                    "if_match": latest.etag,
                    "prefer_return": None,
                }
            )
            response = await writes.update(
                uow.bound(sub), self.consents, to_fhir(record), check_access=False
            )
            stored = orjson.loads(response.body)
        return Outcome(from_fhir(stored), authority, stored)

    async def sign(
        self,
        request: FhirRequest,
        consent_id: str,
        signature: SignatureRecord,
        other_parent_heard: list[str],
        child_view: ChildViewRecord | None,
    ) -> Outcome:
        async def add(record: ConsentRecord, child: ChildFacts, day: date) -> Judged:
            await self._answerers(
                request,
                [signature.grantor],
                record.collected_by_organization,
                record.grantor_organizations,
            )
            if record.status is not Status.PROPOSED:
                raise error(
                    409,
                    "business-rule",
                    f"Consent/{consent_id} is {record.status.value}: signatures can only be"
                    " added while it is proposed; record a new consent instead",
                )
            heard = child_view.date if child_view else None
            refuse(
                signature_date_problems(signature.date, child.birth_date, day)
                + (heard_date_problems(heard, child.birth_date, day) if heard else [])
            )
            authority = who_may_consent(child, record.purpose, day, record.consent_flags())
            _refuse_unauthorised(authority, [signature])
            signatures = record.signatures
            if _latest_answer(record, signature.grantor) is not signature.decision:
                signatures = [*signatures, signature]
            updated = record.model_copy(
                update={
                    "signatures": signatures,
                    "other_parent_heard": sorted({*record.other_parent_heard, *other_parent_heard}),
                    "child_view": child_view or record.child_view,
                }
            )
            return judged(updated, authority, day), authority

        return await self._change(request, consent_id, add)

    async def _while_proposed(
        self,
        request: FhirRequest,
        consent_id: str,
        what: str,
        answer: Callable[[ConsentRecord, Authority], ConsentRecord],
    ) -> Outcome:
        """Record `what` on a proposed consent, as the organisation that collected it."""

        async def add(record: ConsentRecord, child: ChildFacts, day: date) -> Judged:
            collector = record.collected_by_organization
            caller = request.caller
            if caller.fhir_user or caller.orgnr is None or caller.orgnr != collector:
                raise error(
                    403,
                    "forbidden",
                    f"Only the organisation that collected the consent ({collector}) records"
                    f" {what}",
                )
            if record.status is not Status.PROPOSED:
                raise error(
                    409,
                    "business-rule",
                    f"Consent/{consent_id} is {record.status.value}: {what} can only be"
                    " recorded while it is proposed",
                )
            authority = who_may_consent(child, record.purpose, day, record.consent_flags())
            return judged(answer(record, authority), authority, day), authority

        return await self._change(request, consent_id, add)

    async def record_child_view(
        self, request: FhirRequest, consent_id: str, view: ChildViewRecord
    ) -> Outcome:
        """The child's view (medvirkning), on its own: no grantor signs again."""

        def add(record: ConsentRecord, authority: Authority) -> ConsentRecord:
            if authority.child_view == "not-applicable" and authority.decidable:
                raise error(
                    422,
                    "business-rule",
                    f"The child is a grantor under the rule {authority.rule}: its own answer"
                    " (a signature, or an objection) is its view",
                    "heard",
                )
            return record.model_copy(update={"child_view": view})

        return await self._while_proposed(request, consent_id, "the child's view", add)

    async def record_hearing(self, request: FhirRequest, consent_id: str, parent: str) -> Outcome:
        """That the holder of parental responsibility who did not sign was heard."""

        def add(record: ConsentRecord, authority: Authority) -> ConsentRecord:
            signed = {s.grantor for s in record.signatures}
            parents = [m for g in authority.groups if g.role == "parents" for m in g.members]
            if not authority.one_parent_must_hear_other or parent not in parents:
                raise error(
                    422,
                    "business-rule",
                    f"{parent} is not a holder of parental responsibility who must be heard"
                    f" under the rule {authority.rule}",
                    "parent",
                )
            if parent in signed:
                raise error(
                    422, "business-rule", f"{parent} answered the consent; nothing to hear",
                    "parent",
                )  # fmt: skip
            heard = sorted({*record.other_parent_heard, parent})
            return record.model_copy(update={"other_parent_heard": heard})

        return await self._while_proposed(request, consent_id, "a hearing", add)

    async def record_objection(
        self, request: FhirRequest, consent_id: str, objection: ChildViewRecord, method: str
    ) -> Outcome:
        """The child objects. Where the child is a grantor, that is its refusal (recorded
        once) and it blocks; otherwise it is the child's view, which the grantors weigh."""

        def add(record: ConsentRecord, authority: Authority) -> ConsentRecord:
            child = record.patient
            if child in authority.grantors:
                if _latest_answer(record, child) is Decision.REFUSE:
                    return record
                refusal = SignatureRecord(
                    grantor=child,
                    decision=Decision.REFUSE,
                    method=method,
                    collected_by=objection.heard_by,
                    date=objection.date or self.clock(),
                )
                return record.model_copy(update={"signatures": [*record.signatures, refusal]})
            return record.model_copy(update={"child_view": objection})

        return await self._while_proposed(request, consent_id, "the child's objection", add)

    async def withdraw(
        self, request: FhirRequest, consent_id: str, by: str, reason: str
    ) -> Outcome:
        async def end(record: ConsentRecord, child: ChildFacts, day: date) -> Judged:
            await self._answerers(
                request, [by], record.collected_by_organization, record.grantor_organizations
            )
            if record.status not in OPEN_STATUSES:
                raise error(
                    409,
                    "business-rule",
                    f"Consent/{consent_id} is {record.status.value}; only a proposed or active"
                    " consent can be withdrawn",
                )
            authority = who_may_consent(child, record.purpose, day, record.consent_flags())
            signed = {s.grantor for s in record.signatures}
            if by not in signed and by not in authority.grantors:
                raise error(
                    422,
                    "forbidden",
                    f"{by} cannot withdraw Consent/{consent_id}: only a grantor whose consent"
                    f" was required may ({', '.join(sorted(signed | set(authority.grantors)))})",
                    "by",
                )
            withdrawn = record.model_copy(
                update={
                    "withdrawal": WithdrawalRecord(by=by, date=day, reason=reason),
                    "ended_because": "withdrawn",
                }
            )
            return judged(withdrawn, authority, day), authority

        return await self._change(request, consent_id, end)

    async def reassess_all(self, patient_ids: Iterable[str]) -> None:
        await each_at_most(self.children_at_once, patient_ids, self.reassess)

    async def reassess(self, patient_id: str) -> list[ConsentRecord]:
        """Judge a child's open consents again with today's facts; store those whose status
        changes and publish the child's access state. Returns the changed consents. A
        child the directory no longer holds has its access state revoked."""
        try:
            return await self._reassess(patient_id)
        except ChildNotRegistered:
            await self.revoke(patient_id)
            return []

    async def _reassess(self, patient_id: str) -> list[ConsentRecord]:
        changed: list[ConsentRecord] = []
        request = service_update("Consent", patient_id)
        async with self.child_unit(patient_id, request) as (uow, child):
            day = self.clock()
            for stored in await uow.of_patient("Consent", patient_id):
                record = from_fhir(stored.json())
                if record.status not in OPEN_STATUSES:
                    continue
                authority = who_may_consent(child, record.purpose, day, record.consent_flags())
                again = reassessed(record, authority, day)
                if _judgement(again) == _judgement(record):
                    continue
                await writes.update(
                    uow.bound(service_update("Consent", stored.res_id)),
                    self.consents,
                    to_fhir(again),
                    check_access=False,
                )
                changed.append(again)
        return changed

    # -- the replicated state -------------------------------------------------------------

    async def republish_all(self, patient_ids: Iterable[str]) -> None:
        await each_at_most(self.children_at_once, patient_ids, self.republish)

    async def republish(self, patient_id: str) -> None:
        """Publish the child's access state again (its relations changed); a child the
        directory no longer holds has its access state revoked instead (a record about it
        may outlive it, and its events arrive after the deletion)."""
        try:
            async with self.child_unit(patient_id, service_update("Consent", patient_id)):
                pass
        except ChildNotRegistered:
            await self.revoke(patient_id)

    async def publish_state(self, uow: StoreUnitOfWork, patient_id: str, child: ChildFacts) -> None:
        """Queue the child's access state for the consent-view bucket, in this unit of work."""
        consents = [from_fhir(s.json()) for s in await uow.of_patient("Consent", patient_id)]
        disclosures = await open_disclosures(uow, patient_id)
        state = patient_state(
            patient_id,
            child,
            consents,
            disclosures,
            related=await related(uow.conn, patient_id),
            care_order_holders=await self.directory.care_order_holders(child, self.clock()),
            care_order_ends=await self.directory.care_order_ends(child, self.clock()),
        )
        await self._queue_state(uow, state)

    async def _queue_state(self, uow: StoreUnitOfWork, state: PatientAccessState) -> None:
        key = subject_token(state.patient)
        await add_message(
            uow.conn,
            str(uuid.uuid4()),
            f"$KV.{self.view_bucket}.{key}",
            state.model_dump_json().encode(),
            state.patient,
            before_answer=True,
        )

    async def revoke(self, patient_id: str) -> None:
        """A child whose record the directory no longer holds (deleted): its access state
        becomes empty, so nothing about it is released on any basis that rested on it
        (parents, consents, relations, care orders). Its consent records stay, as records."""
        request = service_update("Consent", patient_id)
        async with self.fhir.unit_of_work(request) as uow:
            await uow.lock_patient(patient_id)
            await self._queue_state(uow, PatientAccessState(patient=patient_id))
