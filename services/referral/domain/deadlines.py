"""The legal deadlines of a referral (pbrl §2-2) and when each is breached.

The assessment deadline is the ansiennitetsdato (first receipt) plus 10 working days;
the frist is set on acceptance. A deadline is breached the day after it, if the step it
guards has not happened: the assessment (accept or reject) or the start of care.
"""

from __future__ import annotations

from datetime import date

from services.referral.domain.model import TaskState
from services.referral.domain.vocabulary import (
    ASSESSMENT_WORKING_DAYS,
    Breach,
    TaskStatus,
)
from services.referral.domain.working_days import add_working_days

UNASSESSED = frozenset({TaskStatus.RECEIVED, TaskStatus.ON_HOLD})
NOT_STARTED = frozenset({TaskStatus.ACCEPTED, TaskStatus.ON_HOLD})


def assessment_deadline(ansiennitetsdato: date) -> date:
    return add_working_days(ansiennitetsdato, ASSESSMENT_WORKING_DAYS)


def breaches_due(task: TaskState, day: date) -> list[Breach]:
    """Breaches that have happened by `day` and are not yet recorded on the Task."""
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
