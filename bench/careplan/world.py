"""What the care plan benchmark's phases share: options, the organisations and the
seeded children."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

import orjson

from bench.crud import (
    DEFAULT_DATABASE_URL,
    RESULTS_DIR,
    Identifiers,
)
from bench.load import Reply
from bench.referral import (
    org_reference,
    organisation,
)
from services.careplan import NAME
from services.careplan.domain.coordination import coordinator_of_record
from services.careplan.domain.vocabulary import (
    CATEGORY_SYSTEM,
    CHANGED_BY_EXT,
    COLLABORATION_EXT,
    EXTENT_EXT,
    NEXT_REVISION_EXT,
    REGIME_EXT,
    PlanCategory,
)
from services.careplan.records import participants
from shared.clock import now_instant
from shared.codes import ROLE_SYSTEM, OrganisationKind
from shared.identifiers import FNR_SYSTEM, ORGNR_SYSTEM

PHASES = ("update", "coordinator")
STACK_SERVICES = ("gateway", "directory", "consent", NAME)
"""The careplan service and what it needs (the directory for the child, the consent
service for the consent view and the audit trail); the referral service is not started."""
SERVERS = {
    "gateway": "gateway",
    "directory": "directory",
    "consent": "consent",
    "careplan": NAME,
    "nats-server": "nats",
}
"""Server CPU: reported name → the stack's child process name."""
ROUTED_TYPES = ("Patient", "CarePlan", "CareTeam")
SEED_CONNECTIONS = 3
"""Seeding transactions under way at once: the Python side (validation, JSON, index
values) and PostgreSQL overlap on two cores."""
BUPS, KOMMUNER, SKOLER = 8, 40, 100
"""How many organisations of each kind take part in the seeded teams: each team has one
BUP (the one that asks who coordinates), a kommune-helse as koordinator and a school."""
SETUP_CONCURRENCY = 16
HANDOVER_SHARE = 2
"""Every second seeded team had a koordinator before the current one (a handover): the
former one's period has an end, so the coordinator of record is a question of dates."""
TABLES = ("resources", "resource_history", "search_index", "outbox")
EXPLAINED = 5
"""Seeded children whose coordinator search is explained after the phases."""

Check = Callable[[Reply], dict[str, Any] | None]
"""What a successful answer must contain: what it found, or None (counted as an error)."""


@dataclass(frozen=True)
class CareplanOptions:
    clients: tuple[int, ...] = (16,)
    """Concurrent clients; every phase runs once at each count, in this order."""
    seconds: float = 15.0
    warmup: float = 3.0
    """Unmeasured seconds before each phase's window."""
    plans: int = 100_000
    """Seeded children, each with one CarePlan and one CareTeam."""
    updated_plans: int = 256
    """Children registered in the directory with a plan created through the API; the
    update phase revises these."""
    batch: int = 500
    """Seeded children per transaction."""
    database: Literal["postgresql"] = "postgresql"
    database_url: str = DEFAULT_DATABASE_URL
    out_dir: Path | None = field(default=RESULTS_DIR)
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.clients or min(self.clients) < 1:
            raise ValueError("at least one client count, each at least 1")
        if self.plans < 1 or self.seconds <= 0 or self.batch < 1:
            raise ValueError("at least 1 plan, a positive batch and a positive number of seconds")
        if self.updated_plans < max(self.clients):
            raise ValueError(
                f"--updated-plans ({self.updated_plans}) must be at least the largest number"
                f" of clients ({max(self.clients)}): each client revises plans of its own"
            )

    def as_dict(self) -> dict[str, Any]:
        return {
            "clients": list(self.clients),
            "seconds": self.seconds,
            "warmup_seconds": self.warmup,
            "plans": self.plans,
            "updated_plans": self.updated_plans,
            "batch": self.batch,
            "database": self.database,
            "database_url": self.database_url,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class Organisations:
    bups: tuple[str, ...]
    kommuner: tuple[str, ...]
    skoler: tuple[str, ...]
    stranger: str
    """A BUP on no team: must find nothing."""

    @classmethod
    def made(cls, ids: Identifiers) -> Organisations:
        def some(count: int) -> tuple[str, ...]:
            return tuple(ids.orgnr() for _ in range(count))

        return cls(some(BUPS), some(KOMMUNER), some(SKOLER), ids.orgnr())

    def organizations(self) -> list[dict[str, Any]]:
        """Every organisation named, as the operator registers it (each with its kind)."""
        bup, kommune, skole = (
            OrganisationKind.BUP,
            OrganisationKind.KOMMUNE_HELSE,
            OrganisationKind.SKOLE,
        )
        return [
            *(organisation(orgnr, bup) for orgnr in (*self.bups, self.stranger)),
            *(organisation(orgnr, kommune) for orgnr in self.kommuner),
            *(organisation(orgnr, skole) for orgnr in self.skoler),
        ]

    def bup_of(self, index: int) -> str:
        """The BUP on seeded child `index`'s team (it treats the child, asks the question)."""
        return self.bups[index % len(self.bups)]

    def coordinator_of(self, index: int) -> str:
        """The kommune-helse that coordinates for seeded child `index` today."""
        return self.kommuner[index % len(self.kommuner)]

    def former_coordinator_of(self, index: int) -> str:
        return self.kommuner[(index + 1) % len(self.kommuner)]

    def school_of(self, index: int) -> str:
        return self.skoler[index % len(self.skoler)]


@dataclass(frozen=True)
class SeededChild:
    fnr: str
    patient: str
    """The Patient id (not registered in the directory: the seeded data needs none)."""
    team: str
    plan: str


def member(orgnr: str, role: str, start: date, end: date | None = None) -> dict[str, Any]:
    """An organisation on a care team, by organisasjonsnummer, in `role` from `start`."""
    period = {"start": start.isoformat(), **({"end": end.isoformat()} if end else {})}
    return {
        "role": [{"coding": [{"system": ROLE_SYSTEM, "code": role}]}],
        "member": org_reference(orgnr),
        "period": period,
    }


def child_member(reference: str, start: date) -> dict[str, Any]:
    """The child itself on its care team (`reference`: its Patient) from `start`."""
    return {
        "role": [{"coding": [{"system": ROLE_SYSTEM, "code": "pasient"}]}],
        "member": {"reference": reference},
        "period": {"start": start.isoformat()},
    }


def _subject(child: SeededChild) -> dict[str, Any]:
    """The child as the service stores it once the directory resolved the identifier."""
    return {
        "identifier": {"system": FNR_SYSTEM, "value": child.fnr},
        "reference": f"Patient/{child.patient}",
        "type": "Patient",
    }


def seeded_team(index: int, child: SeededChild, orgs: Organisations, day: date) -> dict[str, Any]:
    """Child `index`'s ansvarsgruppe: the kommune-helse coordinating today (after a
    handover for every second child), the BUP, the school and the child itself."""
    started = day - timedelta(days=400 + index % 300)
    current_from = started
    members = []
    if index % HANDOVER_SHARE == 0:
        current_from = day - timedelta(days=30 + index % 300)
        former_to = current_from - timedelta(days=1)
        members.append(member(orgs.former_coordinator_of(index), "koordinator", started, former_to))
    members += [
        member(orgs.coordinator_of(index), "koordinator", current_from),
        member(orgs.bup_of(index), "behandler", started),
        member(orgs.school_of(index), "tillitsperson", started),
        child_member(f"Patient/{child.patient}", started),
    ]
    return {
        "resourceType": "CareTeam",
        "id": child.team,
        "status": "active",
        "subject": _subject(child),
        "participant": members,
    }


def activity(description: str, performer: str, extent: str) -> dict[str, Any]:
    return {
        "detail": {
            "status": "in-progress",
            "description": description,
            "performer": [org_reference(performer)],
            "extension": [{"url": EXTENT_EXT, "valueString": extent}],
        }
    }


def _changed_by(orgnr: str) -> dict[str, Any]:
    """What the service records on every version it stores (who changed it, when)."""
    parts = [
        {"url": "at", "valueDateTime": now_instant()},
        {"url": "organization", "valueIdentifier": {"system": ORGNR_SYSTEM, "value": orgnr}},
    ]
    return {"url": CHANGED_BY_EXT, "extension": parts}


def seeded_plan(index: int, child: SeededChild, orgs: Organisations, day: date) -> dict[str, Any]:
    """Child `index`'s plan, written by its BUP: a behandlingsplan or a kriseplan (no
    consent needed), shared with the team's kommune-helse and school, revised within the
    next year (never due during the run)."""
    bup, kommune, school = orgs.bup_of(index), orgs.coordinator_of(index), orgs.school_of(index)
    category = PlanCategory.BEHANDLINGSPLAN if index % 3 else PlanCategory.KRISEPLAN
    revision = day + timedelta(days=30 + index % 330)
    return {
        "resourceType": "CarePlan",
        "id": child.plan,
        "extension": [
            {"url": REGIME_EXT, "valueCode": "helse"},
            {"url": NEXT_REVISION_EXT, "valueDate": revision.isoformat()},
            {"url": COLLABORATION_EXT, "valueString": "BUP, kommunen og skolen møtes hver måned"},
            _changed_by(bup),
        ],
        "status": "active",
        "intent": "plan",
        "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": category.value}]}],
        "subject": _subject(child),
        "period": {"start": (day - timedelta(days=index % 400)).isoformat()},
        "author": {"type": "Organization", "identifier": {"system": ORGNR_SYSTEM, "value": bup}},
        "contributor": [org_reference(kommune), org_reference(school)],
        "careTeam": [{"reference": f"CareTeam/{child.team}"}],
        "activity": [
            activity("Samtaler hos BUP om angst og søvn", bup, "1 time hver 14. dag"),
            activity("Tilrettelegging i skolen, fast kontaktlærer", school, "daglig"),
        ],
    }


def coordinator_path(patient: str, day: date) -> str:
    """The FHIR search that asks who coordinates for the child on `day`."""
    return (
        f"/CareTeam?patient=Patient/{patient}&role=koordinator"
        f"&coordinator-period=le{day.isoformat()}&coordinator-period=ge{day.isoformat()}"
    )


def coordinator_params(patient: str, day: date) -> list[tuple[str, str]]:
    query = coordinator_path(patient, day).split("?", 1)[1]
    return [(k, v) for k, _, v in (part.partition("=") for part in query.split("&"))]


def found_coordinator(reply: Reply, day: date) -> dict[str, Any] | None:
    """The one CareTeam a coordinator search found and its coordinator of record on `day`
    (``{"team": id, "coordinator": orgnr}``), or None when it found none or several, or
    the team names no coordinator that day."""
    try:
        data = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        return None
    teams = [
        entry["resource"]
        for entry in (data.get("entry") or [] if isinstance(data, dict) else [])
        if isinstance(entry, dict)
        and (entry.get("search") or {}).get("mode", "match") == "match"
        and (entry.get("resource") or {}).get("resourceType") == "CareTeam"
    ]
    if len(teams) != 1:
        return None
    holder = coordinator_of_record(participants(teams[0]), day)
    if holder is None or holder.orgnr is None:
        return None
    return {"team": teams[0].get("id"), "coordinator": holder.orgnr}
