"""The topics a partner can subscribe to (DOMAIN §8), as R5-style SubscriptionTopics.

A topic names the domain events that trigger it (`<service>.<ResourceType>.<event>`, as
the services publish them) and the filters a subscription may narrow it with. Each filter
says where its values come from in the event, so matching needs nothing but the event.
Every topic has the filters `patient` (the child) and `event` (the trigger's last part).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.events import DomainEvent

TOPIC_BASE = "https://barnebro.no/fhir/SubscriptionTopic/"

Values = Callable[[DomainEvent], set[str]]


def _data(key: str) -> Values:
    def values(event: DomainEvent) -> set[str]:
        found = event.data.get(key)
        if isinstance(found, list):
            return {str(v) for v in found if v is not None}
        return {str(found)} if found not in (None, "") else set()

    return values


def _patient(event: DomainEvent) -> set[str]:
    return {event.patient, f"Patient/{event.patient}"} if event.patient else set()


def _event(event: DomainEvent) -> set[str]:
    return {event.name}


def _participant(key: str) -> Values:
    def values(event: DomainEvent) -> set[str]:
        participant: Any = event.data.get("participant") or {}
        found = participant.get(key) if isinstance(participant, dict) else None
        return {str(found)} if found else set()

    return values


def _members(event: DomainEvent) -> set[str]:
    return _data("members")(event) | _participant("organization")(event)


@dataclass(frozen=True)
class TopicFilter:
    name: str
    description: str
    values: Values
    resource_type: str


@dataclass(frozen=True)
class Topic:
    key: str
    title: str
    description: str
    resource_type: str
    triggers: frozenset[str]
    """Event types, `<service>.<ResourceType>.<event>`."""
    extra_filters: tuple[tuple[str, str, Values], ...] = ()

    @property
    def url(self) -> str:
        return TOPIC_BASE + self.key

    @property
    def filters(self) -> dict[str, TopicFilter]:
        common = (
            ("patient", "The child: Patient/<id> (or the bare id)", _patient),
            ("event", "The trigger: the last part of the event type", _event),
        )
        return {
            name: TopicFilter(name, text, values, self.resource_type)
            for name, text, values in (*common, *self.extra_filters)
        }

    @property
    def resource_types(self) -> tuple[str, ...]:
        """Every type whose events raise the topic (what a notification may carry)."""
        return tuple(sorted({trigger.split(".")[1] for trigger in self.triggers}))

    def triggered_by(self, event: DomainEvent) -> bool:
        return event.type in self.triggers


def _triggers(prefix: str, *names: str) -> frozenset[str]:
    return frozenset(f"{prefix}.{name}" for name in names)


_REFERRAL_ORGS = (
    ("requester", "The referring organisation (organisasjonsnummer)", _data("requester")),
    ("performer", "The receiving organisation (organisasjonsnummer)", _data("performer")),
)

TOPICS: tuple[Topic, ...] = (
    Topic(
        "referral-status",
        "Referral status changed",
        "A henvisning (referral) was submitted, or its Task moved: received, accepted with"
        " frist, rejected, redirected, started, on hold, resumed, discharged or closed.",
        "Task",
        _triggers("referral.ServiceRequest", "submitted")
        | _triggers(
            "referral.Task",
            "received",
            "accepted",
            "rejected",
            "redirected",
            "started",
            "on-hold",
            "resumed",
            "discharged",
            "closed",
            "closure-warning",
        ),
        (
            *_REFERRAL_ORGS,
            ("status", "The Task's (or ServiceRequest's) status", _data("status")),
        ),
    ),
    Topic(
        "referral-deadline",
        "Referral deadline breached",
        "The assessment deadline (10 working days) or the frist for starting care passed.",
        "Task",
        _triggers("referral.Task", "assessment-overdue", "frist-breached"),
        _REFERRAL_ORGS,
    ),
    Topic(
        "careplan",
        "Care plan created or revised",
        "An individuell plan, kriseplan, behandlingsplan or forløp plan was created,"
        " activated, revised, withdrawn or completed, or its revision fell due.",
        "CarePlan",
        _triggers(
            "careplan.CarePlan",
            "created",
            "activated",
            "revised",
            "revision-due",
            "withdrawn",
            "completed",
        ),
        (("category", "The plan's category, e.g. individuell-plan", _data("category")),),
    ),
    Topic(
        "coordinator",
        "Coordinator assigned or changed",
        "A koordinator or barnekoordinator was assigned, handed over or ended in a care team.",
        "CareTeam",
        _triggers(
            "careplan.CareTeam",
            "coordinator-assigned",
            "coordinator-changed",
            "coordinator-ended",
        ),
        (
            ("organization", "A member organisation of the team", _members),
            ("role", "koordinator or barnekoordinator", _participant("role")),
        ),
    ),
    Topic(
        "careteam-membership",
        "Care team membership changed",
        "A member joined or left an ansvarsgruppe (care team).",
        "CareTeam",
        _triggers("careplan.CareTeam", "member-added", "member-removed"),
        (("organization", "A member organisation of the team", _members),),
    ),
    Topic(
        "consent",
        "Consent granted, withdrawn or authority changed",
        "A consent was granted, refused, withdrawn or expired, or who may consent changed"
        " (the child turned 16 or 18, a care order began or ended).",
        "Consent",
        _triggers(
            "consent.Consent",
            "granted",
            "refused",
            "withdrawn",
            "expired",
            "authority-changed",
            "inactive",
        ),
        (("purpose", "The consent's purpose", _data("purpose")),),
    ),
    Topic(
        "institution-registered",
        "Institution registered",
        "A barneverninstitusjon was registered in the directory (BUP's barnevernansvarlig"
        " must know every institution in the catchment area).",
        "Organization",
        _triggers("directory.Organization", "institution-registered"),
        (("municipality", "A kommunenummer of the institution", _data("municipalities")),),
    ),
)

BY_URL = {topic.url: topic for topic in TOPICS}


def topic_resource(topic: Topic) -> dict[str, Any]:
    """The SubscriptionTopic a partner reads."""
    return {
        "resourceType": "SubscriptionTopic",
        "id": topic.key,
        "url": topic.url,
        "title": topic.title,
        "status": "active",
        "description": topic.description,
        "resourceTrigger": [
            {
                "description": f"Raised by the event {trigger}",
                "resource": trigger.split(".")[1],
                "supportedInteraction": ["create", "update"],
            }
            for trigger in sorted(topic.triggers)
        ],
        "canFilterBy": [
            {"description": f.description, "resource": f.resource_type, "filterParameter": name}
            for name, f in topic.filters.items()
        ],
        "notificationShape": [{"resource": topic.resource_type}],
    }
