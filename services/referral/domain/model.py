"""The facts the referral rules work with, free of FHIR.

`TaskState` is one version of a referral's workflow Task as the rules see it, `Arrival`
when its referral reached the receiver; `Actor` is the organisation asking for a change;
`Problem` (from `shared.rules`) is a refusal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from services.referral.domain.vocabulary import Breach, TaskStatus
from shared.rules import Problem


@dataclass(frozen=True)
class Actor:
    """The organisation (organisasjonsnummer) and its kind asking for a change."""

    orgnr: str | None
    kind: str | None


@dataclass(frozen=True)
class Arrival:
    """When a referral reached its receiver, and how that is known: the start of its
    clock (the ansiennitetsdato is `day`)."""

    day: date
    """the Norwegian calendar day it arrived"""
    at: datetime | None
    """the moment, when it is known to the minute (None: the day only, e.g. a stamp)"""
    source: str
    """a code of referral-arrival-source"""
    identifier: str | None = None
    """the NHN message id, a paper's journal number"""


@dataclass(frozen=True)
class TaskState:
    """What the rules read from one version of a referral's Task."""

    status: TaskStatus
    owner: str
    requester: str
    step: str | None = None
    reason_system: str | None = None
    reason_code: str | None = None
    justification: str = ""
    criteria: tuple[str, ...] = ()
    follow_up: str | None = None
    """organisasjonsnummer of the municipal service responsible for follow-up"""
    follow_up_plan: bool = False
    frist: date | None = None
    submitted: datetime | None = None
    """when the referral was submitted here (Task.authoredOn)"""
    submitted_day: date | None = None
    """the Norwegian calendar day of `submitted`"""
    arrival: Arrival | None = None
    """the recorded arrival; None on a Task from before arrivals were recorded"""
    ansiennitetsdato: date | None = None
    assessment_deadline: date | None = None
    care_started: date | None = None
    no_shows: int = 0
    closure_warned: date | None = None
    breaches: tuple[Breach, ...] = field(default=())


__all__ = ["Actor", "Arrival", "Problem", "TaskState"]
