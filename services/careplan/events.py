"""The events of plans and care teams (DOMAIN §8): plan created, activated, revised,
revision due, withdrawn, completed; coordinator assigned, changed, ended; member added,
removed. Team events carry every member organisation in `data.members`: they go to all."""

from __future__ import annotations

from typing import Any

from services.careplan.domain.vocabulary import COORDINATOR_ROLES, REVISION_DUE_EXT
from services.careplan.records import category_of, extension_value, participants
from shared.fhir.definitions import Change, EventSpec

STATUS_EVENTS = {"active": "activated", "revoked": "withdrawn", "completed": "completed"}


def plan_events(change: Change) -> list[EventSpec]:
    plan = change.after
    if plan is None:
        return []
    data = {"category": category_of(plan), "status": plan.get("status")}
    if change.before is None:
        return [EventSpec("created", data)]
    events = []
    due = extension_value(plan, REVISION_DUE_EXT, "valueDate")
    if due and due != extension_value(change.before, REVISION_DUE_EXT, "valueDate"):
        events.append(EventSpec("revision-due", {**data, "revisionDate": due}))
    if plan.get("status") != change.before.get("status"):
        events.append(EventSpec(STATUS_EVENTS.get(str(plan.get("status")), "revised"), data))
    elif not events:
        events.append(EventSpec("revised", data))
    return events


def _described(participant: Any) -> dict[str, Any]:
    return {
        "member": participant.member,
        "role": participant.role,
        "organization": participant.orgnr,
        "start": participant.start.isoformat() if participant.start else None,
        "end": participant.end.isoformat() if participant.end else None,
    }


def team_events(change: Change, members: list[str]) -> list[EventSpec]:
    if change.after is None:
        return []
    before = participants(change.before) if change.before else []
    after = participants(change.after)
    earlier = {(p.member, p.role, p.start): p for p in before}
    events = []
    ended_coordinators = [
        p
        for p in after
        if p.role in COORDINATOR_ROLES
        and p.end is not None
        and (old := earlier.get((p.member, p.role, p.start))) is not None
        and old.end is None
    ]
    for participant in after:
        key = (participant.member, participant.role, participant.start)
        old = earlier.get(key)
        coordinator = participant.role in COORDINATOR_ROLES
        if old is None:
            handover = [c for c in ended_coordinators if c.role == participant.role]
            name = (
                "coordinator-changed"
                if coordinator and handover
                else ("coordinator-assigned" if coordinator else "member-added")
            )
            details = {"participant": _described(participant), "members": members}
            if handover:
                details["from"] = _described(handover[0])
            events.append(EventSpec(name, details))
        elif old.end is None and participant.end is not None:
            replaced = coordinator and any(
                p.role == participant.role and (p.member, p.role, p.start) not in earlier
                for p in after
            )
            if not replaced:
                name = "coordinator-ended" if coordinator else "member-removed"
                events.append(
                    EventSpec(name, {"participant": _described(participant), "members": members})
                )
    return events or [EventSpec("updated", {"members": members})]
