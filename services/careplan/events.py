"""The events of plans and care teams (DOMAIN §8): plan created, activated, revised,
revision due, withdrawn, completed, consent lost; coordinator assigned, changed, ended;
member added, removed. Team events carry every member organisation in `data.members`: they
go to all.

`consent-lost` is raised by the version that first says a plan's consent is missing (the
marker `samtykke` appears on a plan whose previous version had its consent), whoever
writes it: the consent watch, or a client that saves the plan first. So it is raised once
per loss, and again only after a new consent was recorded on the plan.
"""

from __future__ import annotations

from typing import Any

from services.careplan.domain.lifecycle import CONSENT_PURPOSES
from services.careplan.domain.vocabulary import COORDINATOR_ROLES, REVISION_DUE_EXT, Point
from services.careplan.records import category_of, extension_value, missing_of, participants
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
    lost = Point.SAMTYKKE in missing_of(plan) and Point.SAMTYKKE not in missing_of(change.before)
    category = data["category"]
    if lost and category in CONSENT_PURPOSES:
        events.append(EventSpec("consent-lost", _consent_lost(change.before, plan, data)))
    elif plan.get("status") != change.before.get("status"):
        events.append(EventSpec(STATUS_EVENTS.get(str(plan.get("status")), "revised"), data))
    elif not events:
        events.append(EventSpec("revised", data))
    return events


def _consent_lost(
    before: dict[str, Any], plan: dict[str, Any], data: dict[str, Any]
) -> dict[str, Any]:
    """The plan's consent is gone: its status before and now, the consent purpose it
    needs, and the care teams it names (whom the plan's coordinator tells)."""
    return {
        **data,
        "previousStatus": before.get("status"),
        "purpose": CONSENT_PURPOSES[str(data["category"])],
        "careTeam": [
            str(t.get("reference")) for t in plan.get("careTeam") or [] if t.get("reference")
        ],
    }


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
