"""Watching the legal deadlines of open referrals.

Once an interval (and at start) the monitor finds Tasks whose assessment deadline or
frist has passed without the step it guards, and marks each with the breach (extension
referral-deadline-breach, searchable as `deadline-breach`). The assessment deadline runs
from the referral's arrival whatever its status: a referral nobody has marked received
is found as well (one from before the clock ran from arrival by its submission, and it
gets its dates with the mark). The mark and its event
(`assessment-overdue`, `frist-breached`) are one write in one transaction, and a Task
already marked is never marked again (`shared.due_marks`): each breach is raised exactly
once per referral, whatever restarts, retries or other instances happen meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from services.referral.domain.deadlines import NOT_STARTED, UNASSESSED, breaches_due
from services.referral.domain.vocabulary import BREACH_EXT, TaskStatus
from services.referral.records import add_extension, breach_coding, start_clock, task_state
from shared.clock import now_instant, today
from shared.due_marks import DueMarker
from shared.fhir.service import FhirService

MONITOR_CLIENT = "barnebro-referral-deadlines"
UNDATED_AFTER = timedelta(days=13)
"""A Task without dates (from before the clock ran from arrival) may be overdue once it
was submitted this long ago: 10 working days are at least 14 calendar days, less a day
for the time zone."""


def _searches(day: date) -> list[list[tuple[str, str]]]:
    return [
        [("status", ",".join(UNASSESSED)), ("assessment-deadline", f"lt{day}")],
        [("status", ",".join(NOT_STARTED)), ("frist", f"lt{day}")],
        [("status", TaskStatus.REQUESTED), ("authored-on", f"lt{day - UNDATED_AFTER}")],
    ]


def _mark(task: dict[str, Any], day: date) -> int:
    due = breaches_due(task_state(task), day)
    if due:
        start_clock(task)
    for breach in due:
        add_extension(task, BREACH_EXT, "valueCoding", breach_coding(breach))
    if due:
        task["lastModified"] = now_instant()
    return len(due)


class DeadlineMonitor(DueMarker):
    def __init__(
        self,
        fhir: FhirService,
        base_url: str,
        interval: float,
        clock: Callable[[], date] = today,
    ) -> None:
        super().__init__(
            fhir,
            "Task",
            _searches,
            _mark,
            base_url=base_url,
            client_id=MONITOR_CLIENT,
            interval=interval,
            name="the referral deadline monitor",
            clock=clock,
        )
