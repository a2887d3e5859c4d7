"""The referral state machine: which Task.status changes are legal, by whom, and what
each change must carry.

```
requested ──► received ──► accepted ──► in-progress ──► completed (utskrevet)
   │             │  │          │  ▲         │
   │             │  └► rejected (avslatt | videresendt)
   └─────────────┴──────┴──────┴──┴─────────┴──► cancelled (avsluttet | trukket)
           received, accepted, in-progress ◄──► on-hold
```

The receiving organisation (the Task owner) moves the referral; the referring one (the
requester) may only withdraw it (trukket) before care starts. Closed referrals (rejected,
completed, cancelled) are never reopened: a new referral replaces them. The receiver may
record an earlier arrival of the referral, once (`arrival.py`). Pure rules: the caller
supplies both versions, the day and the deployment's settings (how many no-shows close a
referral).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from services.referral.domain.arrival import arrival_problems
from services.referral.domain.model import Actor, Problem, TaskState
from services.referral.domain.rejection import rejection_problems
from services.referral.domain.vocabulary import (
    CLOSE_REASON_SYSTEM,
    NO_SHOW_CLOSURE_DEFAULT,
    CloseReason,
    Step,
    TaskStatus,
)

S = TaskStatus
OWNER, REQUESTER = "owner", "requester"

TRANSITIONS: dict[tuple[TaskStatus, TaskStatus], frozenset[str]] = {
    (S.REQUESTED, S.RECEIVED): frozenset({OWNER}),
    (S.REQUESTED, S.CANCELLED): frozenset({REQUESTER}),
    (S.RECEIVED, S.ACCEPTED): frozenset({OWNER}),
    (S.RECEIVED, S.REJECTED): frozenset({OWNER}),
    (S.RECEIVED, S.ON_HOLD): frozenset({OWNER}),
    (S.RECEIVED, S.CANCELLED): frozenset({OWNER, REQUESTER}),
    (S.ACCEPTED, S.IN_PROGRESS): frozenset({OWNER}),
    (S.ACCEPTED, S.ON_HOLD): frozenset({OWNER}),
    (S.ACCEPTED, S.CANCELLED): frozenset({OWNER, REQUESTER}),
    (S.IN_PROGRESS, S.ON_HOLD): frozenset({OWNER}),
    (S.IN_PROGRESS, S.COMPLETED): frozenset({OWNER}),
    (S.IN_PROGRESS, S.CANCELLED): frozenset({OWNER}),
    (S.ON_HOLD, S.RECEIVED): frozenset({OWNER}),
    (S.ON_HOLD, S.ACCEPTED): frozenset({OWNER}),
    (S.ON_HOLD, S.IN_PROGRESS): frozenset({OWNER}),
    (S.ON_HOLD, S.CANCELLED): frozenset({OWNER, REQUESTER}),
}
"""(from, to) → who may make the change."""

STEPS: dict[TaskStatus, tuple[Step, ...]] = {
    S.REQUESTED: (Step.SENDT,),
    S.RECEIVED: (Step.MOTTATT,),
    S.ACCEPTED: (Step.RETT_TIL_HELSEHJELP,),
    S.REJECTED: (Step.AVSLATT, Step.VIDERESENDT),
    S.IN_PROGRESS: (Step.UNDER_BEHANDLING, Step.AVSLUTNING_VARSLET),
    S.ON_HOLD: (Step.PA_VENT,),
    S.COMPLETED: (Step.UTSKREVET,),
    S.CANCELLED: (Step.AVSLUTTET, Step.TRUKKET),
}
"""The businessStatus codes allowed in each status; the first is the default."""
CLOSED = frozenset({S.REJECTED, S.COMPLETED, S.CANCELLED})


@dataclass(frozen=True)
class TaskChange:
    """A requested change of a referral's Task, as the rules see it."""

    before: TaskState
    after: TaskState
    actor: Actor
    day: date
    no_show_closure: int = NO_SHOW_CLOSURE_DEFAULT
    """The fewest recorded no-shows before closure after no-shows (a setting)."""


def roles_of(actor: Actor, task: TaskState) -> set[str]:
    roles = set()
    if actor.orgnr == task.owner:
        roles.add(OWNER)
    if actor.orgnr == task.requester:
        roles.add(REQUESTER)
    return roles


def default_step(status: TaskStatus, actor_roles: set[str]) -> Step:
    if status is S.CANCELLED and actor_roles == {REQUESTER}:
        return Step.TRUKKET
    return STEPS[status][0]


def check_change(change: TaskChange) -> list[Problem]:
    """Problems with a change; [] when it is legal. The first problem's status is the
    answer's."""
    before, after, actor = change.before, change.after, change.actor
    roles = roles_of(actor, before)
    if not roles:
        return [
            Problem(
                403,
                "forbidden",
                f"Only the receiving organisation ({before.owner}) or the referring one"
                f" ({before.requester}) may change this referral",
            )
        ]
    if after.step is not None and after.step not in STEPS[after.status]:
        allowed = ", ".join(STEPS[after.status])
        return [
            Problem(
                422,
                "code-invalid",
                f"businessStatus {after.step!r} does not belong to status {after.status}"
                f" (allowed: {allowed})",
                "Task.businessStatus",
            )
        ]
    if before.status != after.status and before.status in CLOSED:
        return [
            Problem(
                409,
                "business-rule",
                f"The referral is {before.status} and is not reopened: submit a new referral"
                " that replaces it (ServiceRequest.replaces)",
                "Task.status",
            )
        ]
    if after.arrival != before.arrival:
        if before.status in CLOSED:
            return [
                Problem(
                    409,
                    "business-rule",
                    f"The referral is {before.status}: its dates no longer change",
                    "Task.extension",
                )
            ]
        problems = arrival_problems(before, after, OWNER in roles, change.day)
        if problems:
            return problems
    if before.frist is not None and after.frist != before.frist:
        return [
            Problem(
                409,
                "business-rule",
                f"The frist {before.frist} was set when the referral was accepted and is not"
                " moved or removed; a new decision is a new referral",
                "Task.extension",
            )
        ]
    if (
        before.frist is None
        and after.frist is not None
        and (after.status is not S.ACCEPTED or before.status is S.ACCEPTED)
    ):
        return [
            Problem(
                422,
                "business-rule",
                "A frist is set by accepting the referral (status accepted), which grants the"
                " right to necessary care",
                "Task.extension",
            )
        ]
    if before.status == after.status:
        return _same_status(change, roles)
    who = TRANSITIONS.get((before.status, after.status))
    if who is None:
        return [
            Problem(
                409,
                "business-rule",
                f"A referral cannot go from {before.status} to {after.status}"
                f" (from {before.status}: {_targets(before.status)})",
                "Task.status",
            )
        ]
    if not who & roles:
        whom = " or ".join(
            "the receiving organisation" if w == OWNER else "the referring organisation"
            for w in sorted(who)
        )
        return [
            Problem(
                403,
                "forbidden",
                f"Only {whom} may move the referral from {before.status} to {after.status}",
                "Task.status",
            )
        ]
    return _requirements(change, roles)


def _targets(status: TaskStatus) -> str:
    found = [str(to) for (frm, to) in TRANSITIONS if frm is status]
    return ", ".join(found) or "none"


def _same_status(change: TaskChange, roles: set[str]) -> list[Problem]:
    before, after = change.before, change.after
    if OWNER not in roles:
        return [
            Problem(
                403,
                "forbidden",
                "The referring organisation may only withdraw the referral (status"
                " cancelled); other changes are the receiving organisation's",
            )
        ]
    if before.status in CLOSED:
        return [
            Problem(
                409,
                "business-rule",
                f"The referral is {before.status}: its decision and workflow no longer change",
                "Task.status",
            )
        ]
    problems = _no_show_problems(before, after)
    if after.step is Step.AVSLUTNING_VARSLET and after.no_shows < 1:
        problems.append(
            Problem(
                422,
                "business-rule",
                "A warning of closure follows no-shows: record the no-show count"
                " (referral-no-show-count) first",
                "Task.extension",
            )
        )
    return problems


def _no_show_problems(before: TaskState, after: TaskState) -> list[Problem]:
    if after.no_shows < before.no_shows:
        return [
            Problem(
                409,
                "business-rule",
                f"The no-show count only grows (it is {before.no_shows})",
                "Task.extension",
            )
        ]
    if after.no_shows > before.no_shows and after.status not in (S.ACCEPTED, S.IN_PROGRESS):
        return [
            Problem(
                409,
                "business-rule",
                "No-shows are recorded for accepted referrals and during treatment",
                "Task.extension",
            )
        ]
    return []


def _requirements(change: TaskChange, roles: set[str]) -> list[Problem]:
    before, after, day = change.before, change.after, change.day
    problems = _no_show_problems(before, after)
    match after.status:
        case S.ACCEPTED if before.status is not S.ON_HOLD or before.frist is None:
            if after.frist is None:
                problems.append(
                    Problem(
                        422,
                        "required",
                        "Accepting a referral grants a right to necessary care and needs a"
                        " frist, the latest date care starts (extension referral-frist)",
                        "Task.extension",
                    )
                )
            elif after.frist < day:
                problems.append(
                    Problem(
                        422,
                        "business-rule",
                        f"The frist {after.frist} is already past",
                        "Task.extension",
                    )
                )
        case S.ACCEPTED | S.IN_PROGRESS if before.frist is None:
            problems.append(
                Problem(
                    409,
                    "business-rule",
                    "The referral was not accepted: accept it with a frist first",
                    "Task.status",
                )
            )
        case S.RECEIVED if before.frist is not None:
            problems.append(
                Problem(
                    409,
                    "business-rule",
                    "The referral was accepted: it resumes as accepted or in-progress",
                    "Task.status",
                )
            )
        case S.REJECTED:
            problems += rejection_problems(after)
        case S.COMPLETED:
            problems += _discharge_problems(after)
        case S.CANCELLED:
            problems += _cancel_problems(change, roles)
    return problems


def _discharge_problems(after: TaskState) -> list[Problem]:
    problems = []
    if not after.follow_up_plan:
        problems.append(
            Problem(
                422,
                "required",
                "Discharge (utskrivning) hands the child back to the municipality with a"
                " follow-up plan: add a Task.output of type oppfolgingsplan",
                "Task.output",
            )
        )
    if after.follow_up is None:
        problems.append(
            Problem(
                422,
                "required",
                "Discharge must name the municipal service responsible for follow-up"
                " (Task.output of type ansvarlig-oppfolging)",
                "Task.output",
            )
        )
    return problems


def _cancel_problems(change: TaskChange, roles: set[str]) -> list[Problem]:
    """The referrer withdraws (trukket) before care starts; the receiver closes
    (avsluttet) with a reason."""
    before, after = change.before, change.after
    if (after.step or default_step(S.CANCELLED, roles)) == Step.TRUKKET:
        if REQUESTER not in roles:
            return [
                Problem(
                    422,
                    "business-rule",
                    "trukket is the referring organisation's withdrawal; the receiver closes"
                    " a referral with businessStatus avsluttet and a reason",
                    "Task.businessStatus",
                )
            ]
        if before.care_started is not None:
            return [
                Problem(
                    409,
                    "business-rule",
                    "Care has started: the referral is no longer withdrawn by the referrer;"
                    " the receiving organisation closes or discharges it",
                    "Task.status",
                )
            ]
        return []
    if OWNER not in roles:
        return [
            Problem(
                422,
                "business-rule",
                "avsluttet is the receiving organisation's closing; the referrer withdraws"
                " with businessStatus trukket",
                "Task.businessStatus",
            )
        ]
    return _closure_problems(before, after, change.no_show_closure)


def _closure_problems(before: TaskState, after: TaskState, no_show_closure: int) -> list[Problem]:
    if after.reason_system != CLOSE_REASON_SYSTEM or after.reason_code not in set(CloseReason):
        return [
            Problem(
                422,
                "required",
                "Closing a referral needs a coded reason: Task.statusReason with a code from"
                f" {CLOSE_REASON_SYSTEM} ({', '.join(CloseReason)})",
                "Task.statusReason",
            )
        ]
    if after.reason_code != CloseReason.GJENTATTE_UTEBLIVELSER:
        return []
    problems = []
    if after.no_shows < no_show_closure:
        problems.append(
            Problem(
                422,
                "business-rule",
                f"Closing after repeated no-shows needs at least {no_show_closure}"
                f" recorded (referral-no-show-count is {after.no_shows}): record each"
                " no-show as it happens, then close",
                "Task.extension",
            )
        )
    if before.closure_warned is None:
        problems.append(
            Problem(
                409,
                "business-rule",
                "Warn before closing after no-shows: set businessStatus avslutning-varslet"
                " first, which notifies the parties",
                "Task.businessStatus",
            )
        )
    return problems
