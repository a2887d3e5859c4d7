"""The facts the referral rules work with, free of FHIR.

`TaskState` is one version of a referral's workflow Task as the rules see it; `Actor` is
the organisation asking for a change; `Problem` (from `shared.rules`) is a refusal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from services.referral.domain.vocabulary import Breach, TaskStatus
from shared.rules import Problem


@dataclass(frozen=True)
class Actor:
    """The organisation (organisasjonsnummer) and its kind asking for a change."""

    orgnr: str | None
    kind: str | None


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
    ansiennitetsdato: date | None = None
    assessment_deadline: date | None = None
    care_started: date | None = None
    no_shows: int = 0
    closure_warned: date | None = None
    breaches: tuple[Breach, ...] = field(default=())


__all__ = ["Actor", "Problem", "TaskState"]
