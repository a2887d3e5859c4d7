"""The events a referral raises (DOMAIN §8): submitted, received, accepted with frist,
rejected, redirected, started, on hold, resumed, discharged, closed, closure warning,
no-show recorded, assessment overdue, frist breached.

Every event carries the referral's parties (organisasjonsnummer) and, on its subject, the
patient, so partners and the subscription service can route it; `notify` names who must
be told in particular (the GP and the municipal service on discharge, the service that
takes over on a redirect).
"""

from __future__ import annotations

from typing import Any

from services.referral.domain.model import TaskState
from services.referral.domain.vocabulary import COMPLETENESS_EXT, Step, TaskStatus
from services.referral.records import shared_with, task_state
from shared.fhir.definitions import Change, EventSpec
from shared.fhir.elements import orgnr_of

S = TaskStatus
STATUS_EVENTS = {
    S.RECEIVED: "received",
    S.ACCEPTED: "accepted",
    S.REJECTED: "rejected",
    S.IN_PROGRESS: "started",
    S.ON_HOLD: "on-hold",
    S.COMPLETED: "discharged",
    S.CANCELLED: "closed",
}


def _dates(task: TaskState) -> dict[str, Any]:
    found = {
        "ansiennitetsdato": task.ansiennitetsdato,
        "assessmentDeadline": task.assessment_deadline,
        "frist": task.frist,
    }
    return {k: v.isoformat() for k, v in found.items() if v is not None}


def _orgs(resource: dict[str, Any], receiver: str) -> dict[str, str]:
    """The referrer and the receiver (organisasjonsnummer): what partners filter on."""
    performer = resource.get(receiver)
    if isinstance(performer, list):
        performer = performer[0] if performer else None
    found = {"requester": orgnr_of(resource.get("requester")), "performer": orgnr_of(performer)}
    return {k: v for k, v in found.items() if v}


def task_events(change: Change, parties: list[str]) -> list[EventSpec]:
    if change.after is None or change.before is None:
        return []
    before, after = task_state(change.before), task_state(change.after)
    focus = (change.after.get("focus") or {}).get("reference")
    data: dict[str, Any] = {
        "referral": focus,
        "status": after.status.value,
        "businessStatus": after.step,
        "parties": parties,
        **_orgs(change.after, "owner"),
        **_dates(after),
    }
    events = []
    if after.status != before.status:
        name = STATUS_EVENTS.get(after.status, "updated")
        if after.step == Step.VIDERESENDT:
            name = "redirected"
        elif before.status is S.ON_HOLD and after.status is not S.CANCELLED:
            name = "resumed"
        details = dict(data)
        if after.status in (S.REJECTED, S.CANCELLED):
            details["reason"] = after.reason_code
        if after.follow_up:
            details["followUp"] = after.follow_up
        told = sorted(set(shared_with(change.after)) - set(shared_with(change.before)))
        if told or after.follow_up:
            details["notify"] = sorted({*told, *([after.follow_up] if after.follow_up else [])})
        events.append(EventSpec(name, details))
    elif after.step == Step.AVSLUTNING_VARSLET and before.step != after.step:
        events.append(EventSpec("closure-warning", {**data, "noShows": after.no_shows}))
    if after.no_shows > before.no_shows:
        events.append(EventSpec("no-show-recorded", {**data, "noShows": after.no_shows}))
    for breach in after.breaches:
        if breach not in before.breaches:
            events.append(EventSpec(breach.value, data))
    return events or [EventSpec("updated", data)]


def service_request_events(change: Change, parties: list[str]) -> list[EventSpec]:
    referral = change.after
    if referral is None:
        return []
    data = {"parties": parties, "status": referral.get("status"), **_orgs(referral, "performer")}
    if change.before is None:
        completeness = [
            (e.get("valueCoding") or {}).get("code")
            for e in referral.get("extension") or []
            if e.get("url") == COMPLETENESS_EXT
        ]
        return [EventSpec("submitted", {**data, "completeness": completeness})]
    return [EventSpec("updated", data)]
