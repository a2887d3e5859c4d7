"""Changing a referral's Task: the state machine applied to a client's update.

A client moves a referral by updating its Task (PUT with `If-Match`). The server keeps
what it owns (who the Task is for, its focus, owner and requester, the dates it derives),
asks the rules (`domain/workflow.py`) whether the change is legal for this organisation,
checks what needs the directory or the consent view (the follow-up service is municipal;
a redirect has a consent to pass contact details on) and fills in what follows: the
ansiennitetsdato and assessment deadline of an earlier arrival the receiver records, the
start and end of care, the appeal notice of a rejection, who made the change and when.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from services.referral.domain.deadlines import breaches_due
from services.referral.domain.model import Actor, Problem, TaskState
from services.referral.domain.vocabulary import (
    APPEAL_EXT,
    APPEAL_TEXT,
    ARRIVAL_EXT,
    BREACH_EXT,
    CLOSURE_WARNED_EXT,
    CRITERION_EXT,
    FRIST_EXT,
    NO_SHOWS_EXT,
    TRANSITION_EXT,
    Step,
    TaskStatus,
)
from services.referral.domain.workflow import (
    CLOSED,
    TaskChange,
    check_change,
    default_step,
    roles_of,
)
from services.referral.records import (
    add_extension,
    arrival_extension,
    breach_coding,
    extensions,
    keep_server_extensions,
    keep_unchanged,
    orgnr_of,
    patient_id,
    set_extension,
    share,
    start_clock,
    step_concept,
    task_state,
)
from shared.access.decision import consents_for
from shared.clock import now_instant, today
from shared.codes import HEALTH_KINDS
from shared.codes import OrganisationKind as K
from shared.fhir.definitions import WriteContext
from shared.fhir.errors import error
from shared.identifiers import HPR_SYSTEM, ORGNR_SYSTEM
from shared.outside_reads import OutsideReads
from shared.rules import refuse

CLIENT_EXTENSIONS = {FRIST_EXT: "valueDate", NO_SHOWS_EXT: "valueUnsignedInt",
                     CRITERION_EXT: "valueCoding"}  # fmt: skip
"""The Task extensions a party sets, with the value each must carry."""
IMMUTABLE = ("focus", "for", "owner", "requester", "intent", "code", "authoredOn")
MUNICIPAL_FOLLOW_UP = frozenset({K.KOMMUNE_HELSE, K.BARNEVERNSTJENESTE, K.FASTLEGE})
CONTACT_DETAILS_PURPOSE = "kontaktinfo-videreformidling"


async def check_task_update(
    resource: dict[str, Any], write: WriteContext, context: OutsideReads, no_show_closure: int
) -> None:
    before = write.before
    if before is None:
        raise error(
            405,
            "not-supported",
            "A referral's Task is created by the server with its ServiceRequest: submit the"
            " ServiceRequest, then update the Task it gets",
        )
    await context.require_directory().address_organisations(
        [(resource.get("owner"), "Task.owner"), (resource.get("requester"), "Task.requester")]
        + [
            (entry.get("valueReference"), f"Task.output[{index}].valueReference")
            for index, entry in enumerate(resource.get("output") or [])
            if isinstance(entry, dict)
        ]
    )
    keep_unchanged(resource, before, IMMUTABLE)
    _check_extension_values(resource)
    resource.pop("executionPeriod", None)  # the server's: when care started and ended
    if "executionPeriod" in before:
        resource["executionPeriod"] = dict(before["executionPeriod"])
    keep_server_extensions(resource, before)
    if not extensions(resource, ARRIVAL_EXT):  # left out: the recorded one stays
        _keep_arrival(resource, before)
    caller = write.request.caller
    actor = Actor(caller.orgnr, caller.org_kind)
    old, new = task_state(before), task_state(resource)
    if new.step is None or (new.step == old.step and new.status != old.status):
        # Left out, or the stored step sent back unchanged with a new status (a client
        # that read the Task and changed its status alone): the server's step follows.
        step = (
            Step(old.step)
            if new.status == old.status and old.step is not None
            else default_step(new.status, roles_of(actor, old))
        )
        resource["businessStatus"] = step_concept(step)
        new = task_state(resource)
    day = today()
    refuse(check_change(TaskChange(old, new, actor, day, no_show_closure)))
    if new.status != old.status and new.status in (TaskStatus.REJECTED, TaskStatus.COMPLETED):
        await _handover(resource, new, context)
    _derive(resource, old, new, actor, write)


def _keep_arrival(resource: dict[str, Any], stored: dict[str, Any]) -> None:
    """Replace the client's arrival by the stored one."""
    resource["extension"] = [
        *(e for e in resource.get("extension") or [] if e.get("url") != ARRIVAL_EXT),
        *extensions(stored, ARRIVAL_EXT),
    ]
    if not resource["extension"]:
        del resource["extension"]


def _record_arrival(resource: dict[str, Any], actor: Actor, moment: str) -> None:
    """Keep what the receiver sent of an earlier arrival (its time, source and identifier)
    and add when and by whom it was recorded."""
    given = {str(p.get("url")): p for p in extensions(resource, ARRIVAL_EXT)[0]["extension"]}
    recorded: dict[str, Any] = {"recorded": moment}
    if actor.orgnr:
        recorded["by"] = {"system": ORGNR_SYSTEM, "value": actor.orgnr}
    parts = arrival_extension(
        given["at"]["valueDateTime"],
        given["source"]["valueCoding"]["code"],
        given.get("identifier", {}).get("valueIdentifier"),
        **recorded,
    )
    set_extension(resource, ARRIVAL_EXT, "extension", parts)


def _check_extension_values(resource: dict[str, Any]) -> None:
    for index, ext in enumerate(resource.get("extension") or []):
        key = CLIENT_EXTENSIONS.get(str(ext.get("url"))) if isinstance(ext, dict) else None
        if key is not None and key not in ext:
            raise error(
                422,
                "value",
                f"Extension {ext['url']} carries a {key}",
                f"Task.extension[{index}]",
            )


async def _handover(resource: dict[str, Any], new: TaskState, context: OutsideReads) -> None:
    """The municipal service named on a rejection or discharge: it must be municipal; a
    redirect needs a consent to pass contact details on; a discharge tells the GP."""
    directory = context.require_directory()
    follow_up = new.follow_up or ""
    kind = await directory.kind_in_use(follow_up)
    if kind not in MUNICIPAL_FOLLOW_UP:
        refuse(
            [
                Problem(
                    422,
                    "business-rule",
                    f"The follow-up service {follow_up} must be a registered municipal"
                    f" service ({', '.join(sorted(MUNICIPAL_FOLLOW_UP))}); it is"
                    f" {kind or 'not registered, or out of use'}",
                    "Task.output",
                )
            ]
        )
    patient = patient_id(resource.get("for")) or ""
    if new.step == Step.VIDERESENDT:
        view = context.require_view()
        if not consents_for(view.state(patient), CONTACT_DETAILS_PURPOSE, follow_up, kind, today()):
            refuse(
                [
                    Problem(
                        422,
                        "business-rule",
                        f"A redirect passes the child's contact details to {follow_up}: that"
                        f" needs an active consent for {CONTACT_DETAILS_PURPOSE} naming it."
                        " Record the consent (consent administration API), or reject the"
                        " referral naming the service without passing details on",
                        "Task.businessStatus",
                    )
                ]
            )
        share(resource, [follow_up])
    if new.status is TaskStatus.COMPLETED:
        told = [follow_up] if kind in HEALTH_KINDS else []
        told += await _general_practitioners(patient, context)
        share(resource, told)


async def _general_practitioners(patient: str, context: OutsideReads) -> list[str]:
    """The orgnr of the child's fastlege office, as the directory records it (only an
    organisation registered as a fastlege is told: the child's record names its GP, and
    naming another organisation there must not make it a party to the referral)."""
    directory = context.require_directory()
    record = await directory.read("Patient", patient) if patient else None
    found = []
    for reference in (record or {}).get("generalPractitioner") or []:
        orgnr = orgnr_of(reference) or await directory.orgnr_of(str(reference.get("reference")))
        if orgnr and await directory.organisation_kind(orgnr) == K.FASTLEGE:
            found.append(orgnr)
    return found


def _derive(
    resource: dict[str, Any], old: TaskState, new: TaskState, actor: Actor, write: WriteContext
) -> None:
    moment, day = now_instant(), today()
    resource["lastModified"] = moment
    if new.arrival == old.arrival:
        _keep_arrival(resource, write.before or {})
    else:
        _record_arrival(resource, actor, moment)
    # The dates run from the arrival; a Task from before arrivals were recorded gets them
    # from its submission. A deadline that passed since the monitor last looked (or that
    # an earlier arrival has passed) is marked by this change.
    timed = start_clock(resource)
    clocked = replace(old, arrival=timed.arrival, ansiennitetsdato=timed.ansiennitetsdato,
                      assessment_deadline=timed.assessment_deadline)  # fmt: skip
    for breach in breaches_due(clocked, day):
        add_extension(resource, BREACH_EXT, "valueCoding", breach_coding(breach))
    period = dict(resource.get("executionPeriod") or {})
    if new.status is TaskStatus.IN_PROGRESS and "start" not in period:
        period["start"] = moment
    if new.status in CLOSED and old.status not in CLOSED:
        period["end"] = moment
    if period:
        resource["executionPeriod"] = period
    if new.step == Step.AVSLUTNING_VARSLET and old.closure_warned is None:
        set_extension(resource, CLOSURE_WARNED_EXT, "valueDate", day.isoformat())
    if new.status is TaskStatus.REJECTED:
        set_extension(resource, APPEAL_EXT, "valueString", APPEAL_TEXT)
    if new.status != old.status or new.step != old.step:
        set_extension(resource, TRANSITION_EXT, "extension", _transition(old, new, actor, write))


def _transition(
    old: TaskState, new: TaskState, actor: Actor, write: WriteContext
) -> list[dict[str, Any]]:
    """Who made the change and when (kept in each version, so history attributes every
    transition)."""
    parts: list[dict[str, Any]] = [
        {"url": "from", "valueCode": old.status.value},
        {"url": "to", "valueCode": new.status.value},
        {"url": "at", "valueDateTime": now_instant()},
    ]
    if actor.orgnr:
        parts.append(
            {"url": "by", "valueIdentifier": {"system": ORGNR_SYSTEM, "value": actor.orgnr}}
        )
    hpr = write.request.caller.hpr
    if hpr:
        parts.append(
            {"url": "practitioner", "valueIdentifier": {"system": HPR_SYSTEM, "value": hpr}}
        )
    return parts
