"""The facts the care plan rules work with, free of FHIR."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class Activity:
    """One measure of a plan: what, how much, by whom."""

    description: str
    performer: str | None
    extent: str | None


@dataclass(frozen=True)
class PlanFacts:
    category: str
    status: str
    goals: int
    team: str | None
    """`CareTeam/<id>` of the ansvarsgruppe, if linked"""
    has_coordinator: bool
    participants: int
    activities: tuple[Activity, ...]
    period_start: date | None
    next_revision: date | None
    consent: bool
    """an active consent for purpose individuell-plan exists"""
    collaboration: bool


@dataclass(frozen=True)
class Participant:
    """One member of a care team, in one role, for one period."""

    member: str
    role: str
    orgnr: str | None
    kind: str | None
    start: date | None
    end: date | None
    substitute_for: str | None = None

    def active_on(self, day: date) -> bool:
        return (self.start is None or self.start <= day) and (self.end is None or day <= self.end)

    def overlaps(self, other: Participant) -> bool:
        return (self.start is None or other.end is None or self.start <= other.end) and (
            other.start is None or self.end is None or other.start <= self.end
        )
