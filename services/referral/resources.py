"""The resource types the referral service owns: ServiceRequest (the henvisning), Task
(its workflow) and DocumentReference (its attachments).

All three are referral information (data category `referral`): the referrer and the
receiver always see a referral (they are its parties), others only under a consent, like
any patient data. None is ever deleted: a referral is closed through its Task's status.
"""

from __future__ import annotations

from typing import Any

from services.referral.domain.vocabulary import (
    ANSIENNITETSDATO_EXT,
    ASSESSMENT_DEADLINE_EXT,
    ATTACHMENT_PROFILE,
    ATTACHMENT_SYSTEM,
    BREACH_EXT,
    COMPLETENESS_EXT,
    FRIST_EXT,
    NO_SHOW_CLOSURE_DEFAULT,
    SERVICE_REQUEST_PROFILE,
    TASK_PROFILE,
    Attachment,
    TaskStatus,
)
from services.referral.domain.workflow import CLOSED
from services.referral.events import service_request_events, task_events
from services.referral.intake import (
    attachment_types,
    check_form,
    check_parties,
    mark_completeness,
)
from services.referral.records import (
    keep_server_extensions,
    keep_unchanged,
    new_task,
    orgnr_of,
    patient_id,
    share,
    shared_with,
    task_state,
)
from services.referral.transitions import check_task_update
from shared.clock import now_instant
from shared.codes import DataCategory
from shared.directory_client import her_id_values
from shared.fhir.answers import parse_if_match
from shared.fhir.definitions import (
    Change,
    EventSpec,
    Lookup,
    ResourceDefinition,
    UnitOfWork,
    WriteContext,
)
from shared.fhir.errors import Issue, error
from shared.fhir.references import reference_target
from shared.fhir.search_params import IDENTIFIER_PARAM, ParamType, SearchParam, extension_values
from shared.fhir.search_query import SearchQuery
from shared.outside_reads import OutsideReads
from shared.store.resource_store import StoredResource
from shared.transport.wire import FhirRequest

TOKEN, REFERENCE, DATE = ParamType.TOKEN, ParamType.REFERENCE, ParamType.DATE
REFERRAL = DataCategory.REFERRAL.value
SUBMITTED = ("subject", "requester", "performer", "replaces", "basedOn", "intent", "authoredOn")
"""What a referrer's amendment does not change: who, whom, about whom, and what it
replaces."""
PASS_ON = frozenset({"own-data", "party"})
"""What a referral may refer to and so share with its receiver: what the referrer wrote or
is a party to. What it sees only under a consent, in an emergency or by an hpl §33
disclosure is its to read, not to pass on."""
MAX_CHAIN = 20
"""How far back a re-referral's receiver inherits earlier referrals."""


def _patient_param(path: str) -> SearchParam:
    return SearchParam(
        "patient",
        REFERENCE,
        (path,),
        "The child (patient:identifier=<fnr system>|<fnr> searches by fødselsnummer)",
        targets=("Patient",),
    )


def _org_param(name: str, path: str, what: str) -> SearchParam:
    return SearchParam(
        name,
        REFERENCE,
        (path,),
        f"{what} ({name}:identifier=urn:oid:2.16.578.1.12.4.1.4.101|<orgnr>)",
        targets=("Organization",),
    )


def _without_shared_with(resource: dict[str, Any]) -> None:
    keep_server_extensions(resource, None)


async def _parties_by_orgnr(query: SearchQuery, context: OutsideReads) -> None:
    """Only a search naming a party by HER-id needs the directory."""
    if any(her_id_values(criterion) for criterion in query.criteria):
        await context.require_directory().search_by_orgnr(query)


async def task_of(uow: UnitOfWork, referral_id: str) -> StoredResource | None:
    """The workflow Task of a referral (ServiceRequest id)."""
    found = await uow.find("Task", [("focus", f"ServiceRequest/{referral_id}")], count=1)
    return found[0] if found else None


AMENDABLE = frozenset({TaskStatus.REQUESTED, TaskStatus.RECEIVED})
"""While a referral is in these states its receiver has not assessed it: the referrer may
still amend it and its attachments."""


async def workflow_status(uow: UnitOfWork, referral_id: str) -> TaskStatus | None:
    task = await task_of(uow, referral_id)
    return task_state(task.json()).status if task is not None else None


async def share_stored(uow: UnitOfWork, reference: str, orgnrs: list[str]) -> dict[str, Any] | None:
    """Share a stored resource of the service with organisations (a new version, only if
    one of them is new to it). Returns its current JSON."""
    res_type, _, res_id = reference.partition("/")
    stored = await uow.read_for_update(res_type, res_id)
    if stored is None or stored.deleted:
        return None
    resource = stored.json()
    if share(resource, orgnrs):
        saved = await uow.save(resource, previous=stored)
        await uow.share_history(res_type, res_id, list(saved.access.parties))
    return resource


class ServiceRequestDefinition(ResourceDefinition):
    resource_type = "ServiceRequest"
    documentation = (
        "A referral (henvisning): the child by fødselsnummer, the referring and receiving"
        " organisations, priority, reason and attachments; its workflow is the Task that"
        " the server creates with it"
    )
    data_category = REFERRAL
    deletable = False
    profile = SERVICE_REQUEST_PROFILE
    search_params = (
        IDENTIFIER_PARAM,
        _patient_param("subject"),
        _org_param("requester", "requester", "The referring organisation"),
        _org_param("performer", "performer", "The receiving organisation"),
        SearchParam("status", TOKEN, ("status",), "active | completed | revoked"),
        SearchParam("priority", TOKEN, ("priority",), "routine | urgent | stat"),
        SearchParam("authored", DATE, ("authoredOn",), "When the referral was written"),
        SearchParam(
            "completeness",
            TOKEN,
            documentation="komplett, or what a referral to BUP lacks"
            " (mangler-kommunal-kartlegging, mangler-barnets-stemme, mangler-somatisk-vurdering)",
            extract=extension_values(COMPLETENESS_EXT, "valueCoding"),
        ),
        SearchParam(
            "replaces",
            REFERENCE,
            ("replaces",),
            "The earlier referral this one replaces",
            targets=("ServiceRequest",),
        ),
        SearchParam(
            "based-on",
            REFERENCE,
            ("basedOn",),
            "An earlier referral this one builds on, or the forløp plan it is made within",
            targets=("ServiceRequest", "CarePlan"),
        ),
        SearchParam(
            "supporting-info",
            REFERENCE,
            ("supportingInfo",),
            "An attachment",
            targets=("DocumentReference",),
        ),
    )

    def __init__(self, context: OutsideReads) -> None:
        self.context = context

    def patient_of(self, resource: dict[str, Any], resource_id: str) -> str | None:
        return patient_id(resource.get("subject"))

    def parties(self, resource: dict[str, Any]) -> list[str]:
        found = [orgnr_of(resource.get("requester"))]
        found += [orgnr_of(p) for p in resource.get("performer") or []]
        return sorted({p for p in found if p} | set(shared_with(resource)))

    async def check_search(self, query: SearchQuery, request: FhirRequest, lookup: Lookup) -> None:
        """A party searched for by HER-id is found as by organisasjonsnummer."""
        await _parties_by_orgnr(query, self.context)

    async def check_write(self, resource: dict[str, Any], write: WriteContext) -> list[Issue]:
        if write.before is not None:
            return await self._amend(resource, write)
        check_form(resource)
        if resource.setdefault("status", "active") != "active":
            raise error(
                422,
                "value",
                "A referral is submitted active; it closes through its Task",
                "ServiceRequest.status",
            )
        _without_shared_with(resource)
        parties = await check_parties(resource, write.request.caller, self.context)
        patient = await self.context.require_directory().resolve_subject(
            resource, "subject", write.request.caller
        )
        _, types = await attachment_types(resource, patient, write.uow.visible(PASS_ON))
        for element in ("replaces", "basedOn"):
            await self._check_earlier(resource, element, patient, write)
        resource.setdefault("authoredOn", now_instant())
        return mark_completeness(resource, parties.performer_kind, types)

    async def _check_earlier(
        self, resource: dict[str, Any], element: str, patient: str, write: WriteContext
    ) -> None:
        for index, reference in enumerate(resource.get(element) or []):
            where = f"ServiceRequest.{element}[{index}]"
            target = reference_target(reference)
            if element == "basedOn" and target is not None and target[0] == "CarePlan":
                continue  # the forløp the referral is made within (the care plan service's)
            if target is None or target[0] != "ServiceRequest":
                raise error(
                    422,
                    "value",
                    f"{element} must refer to a ServiceRequest"
                    + (" or the CarePlan of a forløp" if element == "basedOn" else ""),
                    where,
                )
            earlier = await write.uow.visible(PASS_ON)("ServiceRequest", target[1])
            if earlier is None or patient_id(earlier.get("subject")) != patient:
                raise error(
                    422,
                    "business-rule",
                    f"ServiceRequest/{target[1]} is not a referral of the same child",
                    where,
                )
            if element != "replaces":
                continue
            task = await task_of(write.uow, target[1])
            if task is None or task_state(task.json()).status not in CLOSED:
                raise error(
                    409,
                    "business-rule",
                    f"ServiceRequest/{target[1]} is still open: a referral replaces a closed"
                    " one (rejected, discharged or closed after no-shows)",
                    where,
                )

    async def _amend(self, resource: dict[str, Any], write: WriteContext) -> list[Issue]:
        """The referrer may add to its referral (attachments, reason, priority) until the
        receiver has assessed it; who, whom and about whom do not change."""
        before = write.before or {}
        caller = write.request.caller
        if caller.orgnr != orgnr_of(before.get("requester")):
            raise error(403, "forbidden", "Only the referring organisation amends a referral")
        status = await workflow_status(write.uow, str(before["id"]))
        if status not in AMENDABLE:
            raise error(
                409,
                "business-rule",
                f"The referral is {status}: it is no longer amended; send the receiver what"
                " it needs through the care team or a new referral",
            )
        directory = self.context.require_directory()
        parties = [("ServiceRequest.requester", resource.get("requester"))]
        parties += [
            (f"ServiceRequest.performer[{i}]", p)
            for i, p in enumerate(resource.get("performer") or [])
        ]
        for where, named in parties:  # named by HER-id, as when it was submitted
            await directory.addressed_orgnr(named, where)
        keep_unchanged(resource, before, SUBMITTED, same_reference=True)
        resource["status"] = before.get("status", "active")
        check_form(resource)
        keep_server_extensions(resource, before)
        patient = patient_id(before.get("subject")) or ""
        _, types = await attachment_types(resource, patient, write.uow.visible(PASS_ON))
        performer = orgnr_of((before.get("performer") or [{}])[0])
        kind = await directory.organisation_kind(performer or "")
        return mark_completeness(resource, kind, types)

    shares_on_create = True

    def shares_created(self, resource: dict[str, Any]) -> dict[str, tuple[str, ...]]:
        """A new referral shares its attachments with its requester and receiver: when
        both are named by organisasjonsnummer, the attachments the same transaction
        creates are created shared with them (a HER-id is looked up only by the checks)."""
        performers = resource.get("performer")
        named = (
            resource.get("requester"),
            performers[0] if isinstance(performers, list) and len(performers) == 1 else None,
        )
        parties = {orgnr_of(reference) for reference in named}
        infos = resource.get("supportingInfo")
        if None in parties or not isinstance(infos, list):
            return {}
        targets = [reference_target(info) for info in infos if isinstance(info, dict)]
        return {
            "/".join(target): tuple(sorted(p for p in parties if p))
            for target in targets
            if target is not None and target[0] == "DocumentReference"
        }

    async def after_write(self, change: Change, write: WriteContext) -> None:
        """A new referral gets its Task; its receiver gets its attachments and, for a
        re-referral, the earlier referrals' history."""
        referral = change.after
        if referral is None:
            return
        created = change.before is None
        # The referral's own parties, not those it was shared with later (a redirect
        # passes contact details on, not the attachments).
        parties = [p for p in self.parties(referral) if p not in shared_with(referral)]
        if created or referral.get("supportingInfo") != (change.before or {}).get("supportingInfo"):
            for info in referral.get("supportingInfo") or []:
                target = reference_target(info)
                if target is None or target[0] != "DocumentReference":
                    continue
                reference = "/".join(target)
                already = write.uow.shared_at_creation(reference)
                if created and already and already != set(parties):
                    raise error(
                        500,
                        "exception",
                        f"{reference} was created shared with {sorted(already)}, the referral's"
                        f" parties are {parties}: nothing was stored",
                    )
                if not set(parties) <= already:
                    await share_stored(write.uow, reference, parties)
        if not created:
            return
        # The Task is built here from the referral just validated (`new_task`, whose
        # output tests/test_referral_task_record.py validates): not parsed again.
        await write.uow.save(new_task(referral, now_instant()), validated=True)
        await self._inherit(referral, parties, write)

    async def _inherit(
        self, referral: dict[str, Any], parties: list[str], write: WriteContext
    ) -> None:
        """Share the earlier referrals in the chain, their Tasks and attachments with the
        new referral's parties: what the referrer itself may see of them, no more."""
        visible = write.uow.visible(PASS_ON)
        earlier = [r for e in ("replaces", "basedOn") for r in referral.get(e) or []]
        seen: set[str] = set()
        while earlier and len(seen) < MAX_CHAIN:
            target = reference_target(earlier.pop())
            if target is None or target[0] != "ServiceRequest" or target[1] in seen:
                continue
            seen.add(target[1])
            found = await visible(*target)
            if found is None:
                continue
            references = [f"ServiceRequest/{target[1]}"]
            task = await task_of(write.uow, target[1])
            if task is not None:
                references.append(task.reference)
            for info in found.get("supportingInfo") or []:
                doc = reference_target(info)
                if doc is not None and doc[0] == "DocumentReference":
                    references.append("/".join(doc))
            for reference in references:
                if reference == references[0] or await visible(*reference.split("/", 1)):
                    await share_stored(write.uow, reference, parties)
            earlier += found.get("replaces") or []

    def events(self, change: Change) -> list[EventSpec]:
        return service_request_events(change, self.parties(change.after or change.before or {}))


SERVICE_CLIENT = "barnebro-referral"
"""The client id of the service's own writes (the deadline monitor)."""


class TaskDefinition(ResourceDefinition):
    resource_type = "Task"
    documentation = (
        "The workflow of a referral: status and businessStatus (the Norwegian steps),"
        " ansiennitetsdato, assessment deadline, frist, deadline breaches; created by the"
        " server with its ServiceRequest, moved by updates (PUT with If-Match)"
    )
    data_category = REFERRAL
    deletable = False
    profile = TASK_PROFILE
    search_params = (
        _patient_param("for"),
        SearchParam("focus", REFERENCE, ("focus",), "The referral", targets=("ServiceRequest",)),
        _org_param("owner", "owner", "The receiving organisation"),
        _org_param("requester", "requester", "The referring organisation"),
        SearchParam("status", TOKEN, ("status",), "Workflow status"),
        SearchParam(
            "business-status", TOKEN, ("businessStatus",), "The Norwegian step (referral-step)"
        ),
        SearchParam("authored-on", DATE, ("authoredOn",), "When the referral was submitted"),
        SearchParam("modified", DATE, ("lastModified",), "Last change"),
        SearchParam(
            "ansiennitetsdato",
            DATE,
            documentation="The day the referral reached its receiver: its submission, or an"
            " earlier arrival the receiver recorded (referral-arrival)",
            extract=extension_values(ANSIENNITETSDATO_EXT, "valueDate"),
        ),
        SearchParam(
            "assessment-deadline",
            DATE,
            documentation="Last day of the assessment: ansiennitetsdato + 10 working days",
            extract=extension_values(ASSESSMENT_DEADLINE_EXT, "valueDate"),
        ),
        SearchParam(
            "frist",
            DATE,
            documentation="Latest start of care, set on acceptance",
            extract=extension_values(FRIST_EXT, "valueDate"),
        ),
        SearchParam(
            "deadline-breach",
            TOKEN,
            documentation="assessment-overdue | frist-breached, once passed",
            extract=extension_values(BREACH_EXT, "valueCoding"),
        ),
    )

    def __init__(self, context: OutsideReads, no_show_closure: int) -> None:
        self.context = context
        self.no_show_closure = no_show_closure

    def patient_of(self, resource: dict[str, Any], resource_id: str) -> str | None:
        return patient_id(resource.get("for"))

    def parties(self, resource: dict[str, Any]) -> list[str]:
        found = {orgnr_of(resource.get("requester")), orgnr_of(resource.get("owner"))}
        return sorted({p for p in found if p} | set(shared_with(resource)))

    async def check_search(self, query: SearchQuery, request: FhirRequest, lookup: Lookup) -> None:
        """A party searched for by HER-id is found as by organisasjonsnummer."""
        await _parties_by_orgnr(query, self.context)

    async def check_write(self, resource: dict[str, Any], write: WriteContext) -> list[Issue]:
        if_match = write.request.if_match
        if write.before is not None and (
            if_match is None or parse_if_match(if_match).versions is None
        ):
            raise error(
                428,
                "required",
                "A referral's Task is changed with If-Match naming the version the change is"
                ' based on (e.g. If-Match: W/"3"): two organisations must not overwrite each'
                " other's decisions",
            )
        await check_task_update(resource, write, self.context, self.no_show_closure)
        return []

    async def after_write(self, change: Change, write: WriteContext) -> None:
        """Keep the ServiceRequest in step: its status follows a closed Task, and whoever
        the Task was shared with sees the referral too."""
        if change.before is None or change.after is None:
            return
        before, after = task_state(change.before), task_state(change.after)
        target = reference_target(change.after.get("focus"))
        if target is None:
            return
        added = sorted(set(shared_with(change.after)) - set(shared_with(change.before)))
        closing = after.status in CLOSED and before.status not in CLOSED
        if not added and not closing:
            return
        stored = await write.uow.read_for_update(*target)
        if stored is None or stored.deleted:
            return
        referral = stored.json()
        if added:
            await write.uow.share_history(
                "Task", str(change.after["id"]), self.parties(change.after)
            )
        changed = share(referral, added)
        if closing:
            referral["status"] = "completed" if after.status is TaskStatus.COMPLETED else "revoked"
            changed = True
        if changed:
            saved = await write.uow.save(referral, previous=stored)
            await write.uow.share_history(*target, list(saved.access.parties))

    def events(self, change: Change) -> list[EventSpec]:
        return task_events(change, self.parties(change.after or change.before or {}))


class AttachmentDefinition(ResourceDefinition):
    resource_type = "DocumentReference"
    documentation = (
        "An attachment to a referral: the municipal assessment summary, a PPT assessment,"
        " a somatic assessment, the child's own view (type from referral-attachment)"
    )
    data_category = REFERRAL
    deletable = False
    profile = ATTACHMENT_PROFILE
    search_params = (
        IDENTIFIER_PARAM,
        _patient_param("subject"),
        SearchParam("type", TOKEN, ("type",), "What the attachment is (referral-attachment)"),
        SearchParam("date", DATE, ("date",), "When it was written"),
    )

    def __init__(self, context: OutsideReads) -> None:
        self.context = context

    def patient_of(self, resource: dict[str, Any], resource_id: str) -> str | None:
        return patient_id(resource.get("subject"))

    def parties(self, resource: dict[str, Any]) -> list[str]:
        return shared_with(resource)

    def share_created(self, resource: dict[str, Any], orgnrs: tuple[str, ...]) -> None:
        share(resource, list(orgnrs))

    async def check_write(self, resource: dict[str, Any], write: WriteContext) -> list[Issue]:
        types = [
            c
            for c in (resource.get("type") or {}).get("coding") or []
            if c.get("system") == ATTACHMENT_SYSTEM
        ]
        if not types or any(c.get("code") not in set(Attachment) for c in types):
            raise error(
                422,
                "required",
                f"DocumentReference.type needs a code from {ATTACHMENT_SYSTEM}"
                " (kommunal-kartlegging, ppt-vurdering, somatisk-vurdering, barnets-stemme,"
                " annet)",
                "DocumentReference.type",
            )
        if write.before is None:
            _without_shared_with(resource)
            await self.context.require_directory().resolve_subject(
                resource, "subject", write.request.caller
            )
            return []
        before = write.before
        if write.request.caller.orgnr is None or write.request.caller.orgnr != write.author:
            raise error(
                403, "forbidden", "Only the organisation that wrote an attachment changes it"
            )
        keep_unchanged(resource, before, ("subject",), same_reference=True)
        keep_server_extensions(resource, before)
        referrals = await write.uow.find(
            "ServiceRequest", [("supporting-info", f"DocumentReference/{before['id']}")]
        )
        for referral in referrals:
            status = await workflow_status(write.uow, referral.res_id)
            if status not in AMENDABLE:
                raise error(
                    409,
                    "business-rule",
                    f"The attachment belongs to {referral.reference}, which is {status}: what"
                    " the receiver assessed is kept as it was",
                )
            if resource.get("type") != before.get("type"):
                raise error(
                    422,
                    "business-rule",
                    "An attachment of a referral keeps its type (the referral's completeness"
                    " rests on it); add another attachment instead",
                    "DocumentReference.type",
                )
        return []


def referral_definitions(
    context: OutsideReads, no_show_closure: int = NO_SHOW_CLOSURE_DEFAULT
) -> list[ResourceDefinition]:
    """The service's resource types; `no_show_closure`: the fewest recorded no-shows
    before closure after no-shows (`BARNEBRO_REFERRAL_NO_SHOW_CLOSURE`)."""
    return [
        ServiceRequestDefinition(context),
        TaskDefinition(context, no_show_closure),
        AttachmentDefinition(context),
    ]


__all__ = ["SERVICE_CLIENT", "referral_definitions"]
