"""The legal deadlines of a referral (pbrl §2-2) and when each is breached.

The assessment deadline is the ansiennitetsdato plus 10 working days. The ansiennitetsdato
is the day the referral reached its receiver (`arrival.py`): the clock runs from then,
whatever the Task's status, so a referral nobody has marked received is overdue all the
same, and receiving it later changes none of its dates. The frist is set on acceptance. A
deadline is breached the day after it, if the step it guards has not happened: the
assessment (accept or reject) or the start of care.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from services.referral.domain.model import TaskState
from services.referral.domain.vocabulary import (
    ASSESSMENT_WORKING_DAYS,
    Breach,
    TaskStatus,
)
from services.referral.domain.working_days import add_working_days

UNASSESSED = frozenset({TaskStatus.REQUESTED, TaskStatus.RECEIVED, TaskStatus.ON_HOLD})
NOT_STARTED = frozenset({TaskStatus.ACCEPTED, TaskStatus.ON_HOLD})


def assessment_deadline(ansiennitetsdato: date) -> date:
    return add_working_days(ansiennitetsdato, ASSESSMENT_WORKING_DAYS)


def clock_start(task: TaskState) -> date | None:
    """The ansiennitetsdato: the day of the recorded arrival. A Task from before arrivals
    were recorded keeps the ansiennitetsdato its receipt gave it, or else runs from its
    submission."""
    if task.arrival is not None:
        return task.arrival.day
    return task.ansiennitetsdato or task.submitted_day


def dated(task: TaskState) -> TaskState:
    """The Task with the ansiennitetsdato and assessment deadline its arrival gives it. A
    deadline already given for the same ansiennitetsdato is kept as it was."""
    start = clock_start(task)
    if start is None or (start == task.ansiennitetsdato and task.assessment_deadline):
        return task
    return replace(task, ansiennitetsdato=start, assessment_deadline=assessment_deadline(start))


def breaches_due(task: TaskState, day: date) -> list[Breach]:
    """Breaches that have happened by `day` and are not yet recorded on the Task."""
    task = dated(task)
    due = []
    if (
        task.status in UNASSESSED
        and task.frist is None
        and task.assessment_deadline is not None
        and day > task.assessment_deadline
    ):
        due.append(Breach.ASSESSMENT_OVERDUE)
    if (
        task.status in NOT_STARTED
        and task.care_started is None
        and task.frist is not None
        and day > task.frist
    ):
        due.append(Breach.FRIST_BREACHED)
    return [breach for breach in due if breach not in task.breaches]
